"""The house: refwd owns its import names, no import circle or upward import, one job per file.

- After ``pip install``, the names are ``refwd`` and ``refwd_validation`` (the repository's ``validation/``
  folder); the old name ``validation`` is refused with an ImportError that names the new one.
- The import graph, module-level and function-level imports alike, has no circle; the math (``refwd``) imports
  nothing of the harness, the experiments or the tests; only ``__main__`` imports the command line.
- No source file is longer than about 500 lines, and each opens with a docstring that says its job.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package name -> folder (the harness is installed under a name of its own: setup.py's package_dir)
PACKAGES = {"refwd": ROOT / "refwd", "refwd_validation": ROOT / "validation", "experiments": ROOT / "experiments"}
MAX_LINES = 520


def modules():
    """{dotted module name: path} of every module in the packages."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def imports(name, path):
    """Every module ``name`` imports (at module level or inside functions), relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # `from . import twin` imports a module


def graph():
    known = modules()
    edges = {}
    for name, path in known.items():
        edges[name] = {imported for imported in imports(name, path) if imported in known and imported != name}
    return edges


def test_the_graph_is_read_whole():
    edges = graph()
    assert "refwd_validation.recording.store" in edges and "refwd.optim.adam" in edges
    assert "refwd_validation.scenario" in edges["refwd_validation.harness"]          # `from . import scenario`
    assert "refwd_validation.twin" in edges["refwd_validation.recording.store"]      # `from .. import twin`


def test_no_import_circle():
    edges = graph()
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        path.append(node)
        for imported in sorted(edges[node]):
            visit(imported)
        path.pop()
        done.add(node)

    for node in sorted(edges):
        visit(node)


def test_no_upward_import():
    edges = graph()
    for name, imported in edges.items():
        top = name.split(".")[0]
        if top == "refwd":
            assert {i for i in imported if not i.startswith("refwd.")} == set(), name   # the math stands alone
        if top == "experiments":
            assert {i for i in imported if i.startswith("refwd_validation")} == set(), name
        if name not in ("refwd_validation.__main__", "refwd_validation.cli"):
            assert "refwd_validation.cli" not in imported, f"{name} imports the command line"


SOURCES = sorted({*modules().values(), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("docs/*.py"),
                  *ROOT.glob("docs/examples/*.py"), *ROOT.glob("docs/measure/*.py")})


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_one_job_per_file(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_LINES, f"{path.name} has {len(source.splitlines())} lines"
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring and len(docstring.split()) >= 4, f"{path.name} does not open with a docstring saying its job"


def test_the_old_import_name_is_refused_with_the_new_one():
    """From the repository root the folder is importable as ``validation``: it must say where it went."""
    result = subprocess.run([sys.executable, "-c", "import validation"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "ImportError" in result.stderr and "refwd_validation" in result.stderr


def test_an_installed_refwd_has_no_top_level_validation(tmp_path):
    """Outside the repository, ``validation`` is not refwd's: ``refwd_validation`` is."""
    code = ("import importlib.util, refwd, refwd_validation; "
            "print(importlib.util.find_spec('validation') is None, refwd_validation.__name__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "refwd_validation"]


def test_setup_installs_the_harness_under_refwd_validation():
    setup = (ROOT / "setup.py").read_text()
    assert 'package_dir={"refwd_validation": "validation"}' in setup
    assert '"validation.' not in setup and "'validation'" not in setup and "package_data" not in setup


@pytest.mark.parametrize("script", ["benchmarks/bench_watch.py", "docs/make_audit.py", "docs/make_figures.py"])
def test_the_scripts_outside_the_packages_start(script):
    """Scripts moved out of the package import what they need by its installed name (``--help`` or a dry import)."""
    pytest.importorskip("torch")
    if script.endswith("make_figures.py"):
        pytest.importorskip("matplotlib")
    code = (f"import runpy, sys; sys.argv = [{script!r}, '--help']\n"
            f"try:\n    runpy.run_path({script!r}, run_name='not_main')\nexcept SystemExit:\n    pass\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
