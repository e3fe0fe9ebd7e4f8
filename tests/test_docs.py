"""The documentation points at things that exist: code references, figures, repository files; and the site builds.

- Every code span in docs/ that is a dotted path under ``refwd``, ``refwd_validation`` or ``experiments``
  (`` `refwd.optim.adam.adam_step` ``)
  names an attribute that exists: the longest importable module prefix is imported and the rest looked up with
  ``getattr``. A ``refwd_validation`` module that needs torch is skipped where torch is absent.
- Every image a page shows exists, is a PNG under 150 KB, and every PNG in docs/figures/ is both shown somewhere
  and written by docs/make_figures.py (so the script regenerates all of them). That the script is deterministic
  is checked by running it twice and comparing hashes, by hand: it takes about 10 s, too slow for a unit test.
- Every link to a repository file (outside docs/, or a script) points at a file that exists: the site turns such
  links into plain paths (docs/hooks.py), so ``mkdocs build --strict`` no longer checks them.
- ``mkdocs build --strict`` passes, where mkdocs and mkdocs-material are installed (``pip install -e ".[docs]"``).
"""
import importlib
import importlib.util
import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
REFERENCE = re.compile(r"`((?:refwd_validation|refwd|experiments)(?:\.[A-Za-z_][A-Za-z0-9_]*)*)`")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
LINK = re.compile(r"(?<!!)\[[^\]\n]+\]\(([^)\s]+)\)")
MAX_FIGURE_BYTES = 150 * 1024


def page_id(page):
    return page.relative_to(DOCS).as_posix()


def references():
    found = {}
    for page in PAGES:
        for name in REFERENCE.findall(page.read_text()):
            found.setdefault(name, page_id(page))
    return sorted(found.items())


def resolve(dotted):
    """Import the longest module prefix of ``dotted`` and getattr the rest; return the object."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            spec = importlib.util.find_spec(module_name)
        except ModuleNotFoundError:   # a parent is not a package: a shorter prefix is the module
            spec = None
        if spec is None:
            continue
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == "torch":
                pytest.skip(f"{module_name} needs torch")
            raise
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(f"no module in {dotted!r}")


def test_the_docs_have_pages_and_references():
    assert {"index.md", "weight-decay.md", "conventions.md", "experiments.md"} <= {page_id(p) for p in PAGES}
    assert len(references()) > 30


@pytest.mark.parametrize("dotted, page", references(), ids=[name for name, _ in references()])
def test_code_reference_resolves(dotted, page):
    try:
        resolve(dotted)
    except (AttributeError, ModuleNotFoundError) as error:
        pytest.fail(f"{page}: `{dotted}` does not resolve: {error}")


def test_a_reference_to_something_missing_fails():
    with pytest.raises(AttributeError):
        resolve("refwd.optim.adam.adam_stp")
    with pytest.raises(ModuleNotFoundError):
        resolve("refwdx.optim")


def shown_figures():
    shown = {}
    for page in PAGES:
        for target in IMAGE.findall(page.read_text()):
            shown.setdefault((page.parent / target).resolve(), page_id(page))
    return shown


def test_every_figure_shown_exists_and_is_a_modest_png():
    shown = shown_figures()
    assert shown, "the docs show no figure"
    for path, page in shown.items():
        assert path.is_file(), f"{page} shows {path}, which does not exist"
        assert path.suffix == ".png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path.stat().st_size < MAX_FIGURE_BYTES, f"{path.name}: {path.stat().st_size} bytes"


def test_every_figure_is_shown_and_made_by_the_script():
    on_disk = {path.resolve() for path in (DOCS / "figures").glob("*.png")}
    made = {(DOCS / "figures" / f"{name}.png").resolve()
            for name in re.findall(r'save\(figure, "(\w+)"\)', (DOCS / "make_figures.py").read_text())}
    assert on_disk == made, "docs/make_figures.py must write exactly the PNGs in docs/figures/"
    assert on_disk <= set(shown_figures()), "a figure in docs/figures/ is shown on no page"


def test_links_to_repository_files_point_at_files():
    for page in PAGES:
        relative = page.relative_to(ROOT).as_posix()
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith(("#", "/", "mailto:")):
                continue
            path = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target.split("#")[0]))
            if not path.startswith("docs/") or path.endswith(".py"):
                assert (ROOT / path).exists(), f"{page_id(page)} links to {target}, which does not exist"


def test_every_experiment_has_its_command_on_the_experiments_page():
    from experiments import NAMES
    text = (DOCS / "experiments.md").read_text()
    for name in NAMES:
        assert f"python -m experiments.{name}" in text
        assert f"experiments.{name}.run" in text


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "weight-decay" / "index.html").is_file()
