"""Every command on docs/start-here.md exists as written: the page promises that each one proves its claim.

Commands are the lines of the page's ```bash blocks (a trailing backslash continues a line; ``&&`` chains two
commands) and its inline code spans that start with ``python `` or ``refwd ``. Each is checked without doing its
work, so that this file stays fast; running them is what the page asks of its reader.

- ``python -m pytest ARGS``: collected with ``--collect-only`` in a subprocess; it must select at least one test
  (a misspelt node id is a collection error, a ``-k`` that matches nothing selects none).
- ``refwd SUBCOMMAND ARGS``: through the installed ``refwd`` entry point, ``refwd SUBCOMMAND --help`` exits 0;
  with torch, ``--list`` with the page's own filters exits 0 and lists at least one case. Without torch the
  command cannot run, and the test skips after the ``--help`` check.
- ``python -m MODULE ARGS``: the module is found, from the repository root as ``python -m`` looks for it. It is not
  run with ``--help``: the experiments ignore their arguments, so ``--help`` would run them (seconds each).
- ``python SCRIPT ARGS``: the script is imported as ``python SCRIPT`` would run it (its folder first on the path,
  then ``PYTHONPATH``), under another ``__name__``, so its imports are checked and its ``main()`` is not run:
  docs/make_figures.py ignores its arguments and would rewrite docs/figures/. Skipped where a third-party module
  it imports (matplotlib) is not installed.

A leading ``NAME=value`` sets that variable for the check, as the shell would for the command.
"""
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "start-here.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`((?:python|refwd) [^`\n]+)`")
STEP = re.compile(r"^## \d+\. ", re.MULTILINE)
NEEDS_TORCH = ("refwd validate", "refwd check")


def split_commands(block):
    """The commands of a shell block: continuation lines joined, comments dropped, ``&&`` chains split."""
    text = re.sub(r"\s*\\\n\s*", " ", block)
    commands = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        commands.extend(part.strip() for part in line.split("&&") if part.strip())
    return commands


def page_commands():
    text = PAGE.read_text()
    commands = [command for language, block in FENCE.findall(text) if language in ("bash", "sh", "console")
                for command in split_commands(block)]
    prose = FENCE.sub("", text)
    commands += [command for span in INLINE.findall(prose) for command in split_commands(span)]
    return list(dict.fromkeys(commands))


COMMANDS = page_commands()


def torch_available():
    return importlib.util.find_spec("torch") is not None


def run(argv, **kwargs):
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, **kwargs)


def test_the_page_has_its_steps_and_a_command_in_each():
    text = PAGE.read_text()
    steps = STEP.split(text)[1:]
    assert 5 <= len(steps) <= 7, f"{len(steps)} numbered steps; the page promises 5 to 7"
    for number, step in enumerate(steps, start=1):
        section = step.split("\n## ", 1)[0]
        assert "```bash" in section, f"step {number} has no command"
        assert "$" in section, f"step {number} has no formula"
        assert re.search(r"(?<!!)\[[^\]]+\]\([^)]+\.md[^)]*\)", section), f"step {number} links to no page"


def test_the_commands_are_found():
    assert any(command.startswith("python -m pytest") for command in COMMANDS)
    assert any(command.startswith("refwd ") for command in COMMANDS)
    assert any(command.startswith("python -m experiments.") for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[command.replace("::", " ") for command in COMMANDS])
def test_command_exists(command):
    words = shlex.split(command)
    env = dict(os.environ)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if words[:3] == ["python", "-m", "pytest"]:
        check_pytest(words[3:], command, env)
    elif words[0] == "refwd":
        check_entry_point(words, command, env)
    elif words[:2] == ["python", "-m"]:
        found = run([sys.executable, "-c", FIND_MODULE, words[2]], env=env)
        assert found.returncode == 0, f"{command}: no module {words[2]}\n{found.stderr}"
    elif words[0] == "python":
        check_script(words[1], command, env)
    else:
        pytest.fail(f"{command}: not a command this test knows how to check")


FIND_MODULE = "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)"

IMPORT_SCRIPT = """import os, runpy, sys
script = sys.argv[1]
sys.path[0] = os.path.dirname(os.path.abspath(script))   # as `python SCRIPT` sets it; PYTHONPATH follows
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="imported_by_test_start_here")
"""


def check_script(script, command, env):
    assert (ROOT / script).is_file(), f"{command}: no script {script}"
    result = run([sys.executable, "-c", IMPORT_SCRIPT, script], env=env, timeout=120)
    missing = re.search(r"No module named '([\w.]+)'", result.stderr)
    if result.returncode != 0 and missing and importlib.util.find_spec(missing.group(1).split(".")[0]) is None \
            and not (ROOT / missing.group(1).split(".")[0]).exists():
        pytest.skip(f"{command}: needs {missing.group(1)}")
    assert result.returncode == 0, f"{command} does not start as written:\n{result.stderr}"


def check_pytest(arguments, command, env):
    arguments = [argument for argument in arguments if argument not in ("-q", "--quiet")]
    result = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *arguments],
                 env=env)
    selected = [line for line in result.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if not selected and not torch_available() and "torch" in result.stdout + result.stderr:
        pytest.skip(f"{command}: needs torch")
    assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
    assert selected, f"{command} selects no test:\n{result.stdout}"


ENTRY_POINT = """import sys
from importlib.metadata import entry_points
(entry_point,) = entry_points(group="console_scripts", name=sys.argv[1])
sys.argv = sys.argv[1:]
sys.exit(entry_point.load()())
"""


def check_entry_point(words, command, env):
    """``refwd SUBCOMMAND --help`` through the installed entry point; with torch, ``--list`` on the page's filters."""
    help_ = run([sys.executable, "-c", ENTRY_POINT, *words[:2], "--help"], env=env)
    assert help_.returncode == 0, f"{words[0]} {words[1]} --help:\n{help_.stdout}{help_.stderr}"
    if command.startswith(NEEDS_TORCH):
        if not torch_available():
            pytest.skip(f"{command}: needs torch")
        listed = run([sys.executable, "-c", ENTRY_POINT, *words, "--list"], env=env, timeout=300)
        assert listed.returncode == 0, f"{command} --list:\n{listed.stdout}{listed.stderr}"
        assert listed.stdout.strip(), f"{command} selects no case"
