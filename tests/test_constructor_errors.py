"""Every invalid hyperparameter of refwd_validation.constructor_errors: refwd raises torch's exception class.

- without torch: refwd's constructor raises, and its message names the argument;
- with torch: torch raises the same exception class (and, where torch's message is its own, the same message);
- the data keeps up with torch: every error input of torch's ``optim_error_inputs_func_*`` that is about a
  hyperparameter given as numbers is a row (read from the installed torch's source with ``ast``: importing
  ``torch.testing._internal`` needs test-only packages).
"""
import ast
import inspect
import math
from pathlib import Path

import pytest

import refwd
from refwd_validation.constructor_errors import ERROR_INPUTS, check, raised

ROWS = [pytest.param(row, id=row.id) for row in ERROR_INPUTS]


@pytest.mark.parametrize("row", ROWS)
def test_refwd_rejects_and_names_the_argument(row):
    error = raised(getattr(refwd.optim, row.optimizer), ["w"], row.kwargs)
    assert isinstance(error, (ValueError, TypeError)), f"{row.id}: {error!r}"
    if row.words is not None:
        assert row.words in str(error), f"{row.id}: {error}"


@pytest.mark.torch
@pytest.mark.parametrize("row", ROWS)
def test_torch_raises_the_same_class(row):
    torch = pytest.importorskip("torch")
    outcome = check(row, torch)
    assert outcome.torch is not None, f"torch accepts {row.id}: not an error input"
    assert outcome.same_class, outcome.describe()
    assert outcome.names_the_argument, outcome.describe()
    if row.words is not None:  # torch's own message: refwd repeats it word for word
        assert outcome.same_message, outcome.describe()


def torch_error_kwargs(torch):
    """{optimizer: [kwargs]} of torch's error inputs whose kwargs are all literals (no tensors, no foreach)."""
    source = Path(inspect.getfile(torch)).parent / "testing" / "_internal" / "common_optimizers.py"
    functions = {node.name: node for node in ast.parse(source.read_text()).body if isinstance(node, ast.FunctionDef)}
    found = {}
    for optimizer in ("SGD", "RMSprop", "Adam"):
        node = functions[f"optim_error_inputs_func_{optimizer.lower()}"]
        for call in ast.walk(node):
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "OptimizerInput"):
                continue
            keywords = {keyword.arg: keyword.value for keyword in call.keywords}
            if not (isinstance(keywords.get("params"), ast.Constant) and keywords["params"].value is None):
                continue   # about params: the shell's business
            kwargs_node = keywords["kwargs"]
            try:
                kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in kwargs_node.keywords}
            except ValueError:
                continue   # a tensor: written for refwd as another non-float (see the module's docstring)
            if not {"foreach", "fused", "capturable", "differentiable"} & set(kwargs):
                found.setdefault(optimizer, []).append(kwargs)
    found["AdamW"] = found["Adam"]   # optim_error_inputs_func_adamw returns Adam's
    return found


@pytest.mark.torch
def test_every_numeric_error_input_of_torch_is_a_row():
    torch = pytest.importorskip("torch")
    found = torch_error_kwargs(torch)
    assert sum(map(len, found.values())) >= 6, found   # the reader still finds them (6 in torch 2.13)
    rows = {(row.optimizer, repr(sorted(row.kwargs.items()))) for row in ERROR_INPUTS}
    for optimizer, kwargs_list in found.items():
        for kwargs in kwargs_list:
            assert (optimizer, repr(sorted(kwargs.items()))) in rows, f"{optimizer}({kwargs}) is not a row"


def test_rows_are_unique_and_cover_every_optimizer():
    ids = [row.id for row in ERROR_INPUTS]
    assert len(set(ids)) == len(ids)
    assert {row.optimizer for row in ERROR_INPUTS} == {"SGD", "RMSprop", "Adam", "AdamW"}
    assert any(isinstance(value, float) and math.isnan(value) for row in ERROR_INPUTS for value in row.kwargs.values())
