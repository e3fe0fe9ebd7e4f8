"""What refwd is allowed to depend on, and what the outside world can run: no torch under refwd/, the
``refwd`` command, and CI running the README's test command."""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import refwd

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "refwd"


def run_python(code, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, **kwargs)


A_STEP_OF_EACH = """
import numpy as np
import refwd
model = refwd.MLP([2, 3, 1], activation="tanh")
params = model.init(seed=0)
x, y = np.ones((4, 2)), np.zeros((4, 1))
loss, grads = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))(params)
for cls in (refwd.optim.SGD, refwd.optim.RMSprop, refwd.optim.Adam, refwd.optim.AdamW):
    opt = cls(refwd.optim.decay_groups(params, 0.1))
    new = opt.step(params, grads)
    opt.load_state_dict(opt.state_dict())
    assert all(np.all(np.isfinite(value)) for value in new.values())
"""


def test_refwd_works_with_torch_unimportable_via_sys_modules():
    result = run_python("import sys\nsys.modules['torch'] = None\n" + A_STEP_OF_EACH
                        + "\ntry:\n    import torch\nexcept ImportError:\n    print('torch blocked')\n")
    assert result.returncode == 0, result.stderr
    assert "torch blocked" in result.stdout


def test_refwd_works_with_a_meta_path_blocker():
    # Blocks torch and every torch.* submodule, however it is imported (import, importlib, __import__).
    blocker = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, BlockTorch())
for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
    del sys.modules[name]
"""
    result = run_python(blocker + A_STEP_OF_EACH + "\nimport refwd_validation.cli\n"
                        "assert refwd_validation.cli.main(['--version']) == 0\n")
    assert result.returncode == 0, result.stderr


def test_refwd_does_not_import_torch_even_when_it_is_there():
    result = run_python(A_STEP_OF_EACH + "\nimport sys\nprint(sorted(n for n in sys.modules if n.split('.')[0] == "
                                         "'torch'))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def imported_modules(path):
    """Every module name an import statement in ``path`` names, and every string passed to an import function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__"):
            yield from (arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))


def test_no_module_under_refwd_imports_torch():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 10
    offenders = {str(path.relative_to(ROOT)): name for path in sources for name in imported_modules(path)
                 if name.split(".")[0] == "torch"}
    assert offenders == {}
    # and no textual import hidden from the parser (exec, strings)
    pattern = re.compile(r"^\s*(import\s+torch\b|from\s+torch\b)", re.MULTILINE)
    assert [str(path) for path in sources if pattern.search(path.read_text())] == []


def test_refwd_depends_only_on_numpy_autograd_scipy_and_the_standard_library():
    allowed = {"numpy", "autograd", "scipy", "refwd"} | set(sys.stdlib_module_names)
    third_party = {name.split(".")[0] for path in PACKAGE.rglob("*.py") for name in imported_modules(path)} - allowed
    assert third_party == set()


# ----------------------------------------------------------------------------------------------------------------
# The command line

COMMANDS = {"python -m refwd_validation": [sys.executable, "-m", "refwd_validation"]}
# The console script of this interpreter's installation (a venv's bin/, or pyenv's versions/X/bin/), not
# whichever refwd comes first on PATH.
_script = shutil.which("refwd", path=os.path.dirname(sys.executable))


def command(how):
    if how == "refwd":
        if _script is None:
            pytest.skip("the refwd console script is not installed (pip install -e . installs it)")
        return [_script]
    return COMMANDS[how]


def run_command(how, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(command(how) + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", ["refwd", "python -m refwd_validation"])
def test_version(how):
    result = run_command(how, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"refwd {refwd.__version__}"


@pytest.mark.parametrize("how", ["refwd", "python -m refwd_validation"])
def test_help(how):
    result = run_command(how, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: refwd")
    assert "--version" in result.stdout and "validate" in result.stdout


@pytest.mark.parametrize("how", ["refwd", "python -m refwd_validation"])
def test_no_arguments_prints_help(how):
    result = run_command(how)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: refwd")


def test_version_is_setup_pys():
    assert re.search(r'__version__ = "([^"]+)"', (PACKAGE / "__init__.py").read_text()).group(1) == refwd.__version__


# ----------------------------------------------------------------------------------------------------------------
# CI runs exactly the README's test command

def readme_test_command():
    """The command of the README's fenced block that runs pytest (the "Tests" set-up command)."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", readme, flags=re.DOTALL)
    commands = [line.strip() for block in blocks for line in block.splitlines() if "pytest" in line]
    assert len(commands) == 1, commands
    return commands[0]


def test_ci_runs_the_readme_test_command_verbatim():
    command_line = readme_test_command()
    ci = (ROOT / ".ci" / "run").read_text()
    live_lines = [line.strip() for line in ci.splitlines() if not line.strip().startswith("#")]
    # The command itself, unchanged; `|| exit $?` may follow it, since `set -e` does not stop inside an && list.
    assert any(line == command_line or line.startswith(command_line + " || exit") for line in live_lines)


def test_readme_mentions_the_main_job_command_too():
    readme = (ROOT / "README.md").read_text()
    assert "refwd validate" in readme
