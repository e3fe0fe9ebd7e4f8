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
    packages=find_packages(include=["refwd", "refwd.*", "validation", "validation.*"]),
    package_data={"validation": ["golden/*", "golden/**/*"]},
    install_requires=["numpy>=1.24", "autograd>=1.6", "scipy>=1.10"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80"],
        "validate": ["torch>=2.4,<3"],
        "docs": ["mkdocs>=1.5", "mkdocs-material>=9", "matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["refwd=refwd.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Mathematics"],
)
