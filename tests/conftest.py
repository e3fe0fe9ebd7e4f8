"""Shared test configuration: the hypothesis profiles, and a runner for the scripts in docs/examples/.

Two profiles, registered here and used by every property test (tests/test_properties.py and any other):

- ``ci`` (the default): ``derandomize=True``, so every run on every machine tries the same examples and a
  failure in CI reproduces locally; 50 examples per property; no deadline (a first call may be slow while
  NumPy warms up) and no example database (nothing is written next to the checkout).
- ``long``: 10,000 random examples per property, for a search before a release or after changing a rule or a
  bound; its failures are saved to the local example database (``.hypothesis/``, git-ignored) and replayed
  first on the next run. tests/test_properties.py takes about 8 minutes with it (measured on a 2-core machine).

Select the long one with an environment variable or with hypothesis's own pytest option:

    REFWD_HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py
    python -m pytest tests/test_properties.py --hypothesis-profile=long

The option wins over the variable, which wins over the default.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]

settings.register_profile("ci", derandomize=True, max_examples=50, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("long", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("REFWD_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def interrupt_after(monkeypatch):
    """``interrupt_after(count)``: Ctrl-C (KeyboardInterrupt) once ``count`` cases have finished."""
    def arm(count):
        from refwd_validation import harness
        run_case, done = harness.run_case, []

        def run_then_interrupt(*args, **kwargs):
            if len(done) == count:
                raise KeyboardInterrupt
            done.append(1)
            return run_case(*args, **kwargs)

        monkeypatch.setattr(harness, "run_case", run_then_interrupt)
    return arm


@pytest.fixture(scope="session")
def run_example():
    """Run ``docs/examples/NAME`` as a user would (``python docs/examples/NAME`` from the checkout); return stdout.

    The script must exit 0; its stderr is returned too, for tests that want it silent.
    """
    def run(name):
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        result = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / name)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"docs/examples/{name} failed:\n{result.stderr}"
        return result.stdout, result.stderr
    return run
