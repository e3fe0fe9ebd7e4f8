import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "refwd" / "__init__.py").read_text()).group(1)

setup(
    name="refwd",
    version=version,
    description="A readable NumPy reference for torch.optim's SGD, RMSprop, Adam and AdamW, "
                "with a harness that checks torch against it step by step",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The harness lives in the repository's validation/ folder and installs as refwd_validation: a distribution
    # owns its top-level names, and "validation" is a common name (an existing PyPI project, many user folders).
    packages=find_packages(include=["refwd", "refwd.*"])
    + ["refwd_validation"] + [f"refwd_validation.{name}" for name in find_packages("validation")],
    package_dir={"refwd_validation": "validation"},
    install_requires=["numpy>=1.24", "autograd>=1.6", "scipy>=1.10"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80", "ml_dtypes>=0.4", "packaging>=22", "tqdm>=4.60"],
        "validate": ["torch>=2.4,<3", "ml_dtypes>=0.4", "packaging>=22", "tqdm>=4.60"],
        "docs": ["mkdocs>=1.5", "mkdocs-material>=9", "matplotlib>=3.7", "quickjs>=1.19", "playwright>=1.40"],
    },
    entry_points={"console_scripts": ["refwd=refwd_validation.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Mathematics"],
)
