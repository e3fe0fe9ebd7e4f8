"""optax: docs/check.md's example diagnosis and docs/conventions.md's optax row, measured with optax (jax on CPU).

The diagnosis: ``refwd check optax:rmsprop --as rmsprop`` run as a user runs it (every case of the matrix that
optax can run); its last line, the case count and the ULPs by which optax's profile explains the difference. The
page abridges the first failure's values to "…", and says so.

The profiles: the optax comparisons of tests/test_profiles.py (float64, three steps with a changing lr), run with
that file's inputs and functions: the worst relative difference, over every element of each comparison, between
optax and refwd with the optax profile (sgd ± Nesterov, rmsprop plain, with momentum and centered, adam, adamw,
adam with ``eps_root``), and the same distance of refwd with torch's conventions from optax for each rmsprop.
"""
import importlib.util
import re

import numpy as np

from . import ROOT
from .commands import refwd, run
from .formats import rounded

COMMAND = ("check", "optax:rmsprop", "--as", "rmsprop")
WIDTH = 115                                 # the example's line length on the page


def profile_tests():
    """tests/test_profiles.py as a module: its inputs, refwd_run and optax_run (one source for test and figure)."""
    spec = importlib.util.spec_from_file_location("test_profiles", ROOT / "tests" / "test_profiles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def relative(actual, expected):
    return float(np.max(np.abs(actual - expected) / np.abs(expected)))


def measure_profiles():
    import jax
    jax.config.update("jax_enable_x64", True)
    import optax
    profiles = profile_tests()
    library = lambda factory, **kwargs: profiles.optax_run(optax, factory, **kwargs)  # noqa: E731
    rmsprop = [dict(momentum=None, centered=False), dict(momentum=0.9, centered=False),
               dict(momentum=0.5, centered=True)]
    with_profile, torch_away = [], []
    for nesterov in (False, True):
        with_profile.append(relative(profiles.refwd_run("optax", "sgd", dict(momentum=0.9, nesterov=nesterov)),
                                     library(optax.sgd, momentum=0.9, nesterov=nesterov)))
    for setting in rmsprop:
        target = library(optax.rmsprop, decay=0.9, eps=1e-3, **setting)
        hyper = dict(alpha=0.9, eps=1e-3, momentum=setting["momentum"] or 0.0, centered=setting["centered"])
        with_profile.append(relative(profiles.refwd_run("optax", "rmsprop", hyper), target))
        torch_away.append(relative(profiles.refwd_run("optax", "rmsprop", hyper, conventions={}), target))
    adam = dict(betas=(0.8, 0.9), eps=1e-3)
    with_profile.append(relative(profiles.refwd_run("optax", "adam", adam), library(optax.adam, b1=0.8, b2=0.9,
                                                                                    eps=1e-3)))
    with_profile.append(relative(profiles.refwd_run("optax", "adamw", dict(adam, weight_decay=0.5)),
                                 library(optax.adamw, b1=0.8, b2=0.9, eps=1e-3, weight_decay=0.5)))
    with_profile.append(relative(profiles.refwd_run("optax", "adam", adam, conventions={"eps_placement": "inside_root"}),
                                 library(optax.adam, b1=0.8, b2=0.9, eps=0.0, eps_root=1e-3)))
    return {"comparisons": len(with_profile), "with_profile_relative": rounded(max(with_profile)),
            "torch_rmsprop_relative": [rounded(value) for value in torch_away],
            "torch_rmsprop_least": rounded(min(torch_away)), "torch_rmsprop_most": rounded(max(torch_away))}


def wrapped(text):
    """``text`` broken at spaces into lines of at most WIDTH characters."""
    lines = [""]
    for word in text.split(" "):
        if lines[-1] and len(lines[-1]) + 1 + len(word) > WIDTH:
            lines.append(word)
        else:
            lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
    return "\n".join(lines)


def measure_diagnosis():
    stdout, _, _, _ = run(refwd(*COMMAND), check=False)        # it fails: the exit status says so
    line = next(line for line in stdout.splitlines() if line.startswith("diagnosis: "))
    cases = int(re.search(r" in (\d+) case\(s\)", line).group(1))
    ulps = float(re.search(r"agrees with optax \([^)]*\) to ([\d.]+) ULPs", line).group(1))
    abridged = re.sub(r"(first at [^;]*?\]: )[^;]*;", r"\1…;", line, count=1)   # the failure's values
    return {"command": "refwd " + " ".join(COMMAND), "cases": cases, "optax_ulps": ulps,
            "example": "```\n" + wrapped(abridged) + "\n```"}


def measure_optax():
    import jax
    import optax
    import torch
    return {"optax": {"environment": {"optax": optax.__version__, "jax": jax.__version__, "torch": torch.__version__},
                      "check": measure_diagnosis(), "profiles": measure_profiles()}}
