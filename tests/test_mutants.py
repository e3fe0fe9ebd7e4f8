"""The oracle can fail: every mutant in validation/mutants.py must be caught.

Two layers:
- without torch: each mutant builds (its edits match the reference source exactly once) and changes what the
  rule computes on a short run of refwd's own optimizer shell with the flags it needs;
- with torch: each mutant, injected into the validation harness, makes a case of the matrix fail in the
  lock-step check, and in the free-running check on its own where a free-running case has the flags it needs;
  the unmutated rules pass those same cases (no false alarms).
A contract mutant (right values, broken contract: dtype, inputs changed, aliasing) is checked without torch
through refwd_validation.contracts on a float32 probe, and with torch must fail the lock-step on that contract.

Run time: 20-35 s wall on 2 cores with torch (6 s of it torch's first-call warm-up), 1.5 s without.
"""
import dataclasses

import numpy as np
import pytest

import refwd
from refwd_validation import contracts
from refwd_validation.cases import CASES
from refwd_validation.mutants import MUTANTS
from refwd_validation.mutation import FREE_RUNNING, LOCKSTEP, Mutant, cheapest_case
from refwd_validation.optimizers import OPTIMIZERS as REGISTRY
from refwd_validation.optimizers import MATRIX_OPTIMIZERS
from refwd_validation.outcomes import Check

OPTIMIZERS = {key: REGISTRY[key].refwd_class for key in MATRIX_OPTIMIZERS}   # the catalogue's optimizers
REFERENCE_RULES = {key: REGISTRY[key].rule for key in MATRIX_OPTIMIZERS}   # AdamW's groups say "decoupled"

# Hyperparameters where every bug in the catalogue can show: β₁ ≠ β₂, a small β₂, an lr large enough to move
# the params visibly in a few steps.
BASE = {"sgd": dict(lr=0.1), "rmsprop": dict(lr=0.01, alpha=0.9), "adam": dict(lr=0.01, betas=(0.8, 0.95)),
        "adamw": dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1), "sgdw": dict(lr=0.1, weight_decay=0.1),
        "rmspropw": dict(lr=0.01, alpha=0.9, weight_decay=0.1)}
# The value a numeric hyperparameter takes when a mutant needs it non-zero.
NONZERO = {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}
STEPS = 6


def probe_hyperparameters(mutant, optimizer):
    hyperparameters = dict(BASE[optimizer])
    for key, wanted in mutant.needs.items():
        if key in NONZERO:
            hyperparameters[key] = NONZERO[key] if wanted else 0.0
        elif key in ("nesterov", "centered", "amsgrad", "maximize", "decoupled_weight_decay"):
            hyperparameters[key] = wanted
    if hyperparameters.get("nesterov"):
        hyperparameters.setdefault("momentum", NONZERO["momentum"])
    if mutant.needs.get("paper_convention"):
        hyperparameters["decay_convention"] = "paper"
    return hyperparameters


def probe_run(optimizer, hyperparameters, rule, nonfinite=False, steps=None):
    """Params and state after STEPS steps of the refwd shell with ``rule`` in place of the optimizer's own.

    The gradients depend on the trajectory and shrink (0.6ᵗ), the lr changes every step, there are three
    parameters, and "0.bias" has no grad for the first two steps: every case feature a mutant may need.
    """
    rng = np.random.default_rng(0)
    params = {"0.weight": rng.normal(size=(3, 4)), "0.bias": rng.normal(size=3), "1.weight": rng.normal(size=(1, 3))}
    targets = {name: rng.normal(size=param.shape) for name, param in params.items()}
    noise = [{name: rng.normal(size=param.shape) for name, param in params.items()} for _ in range(STEPS)]
    opt = OPTIMIZERS[optimizer](params, **hyperparameters)
    opt.rule = rule
    for step in range(steps or STEPS):
        opt.param_groups[0]["lr"] = hyperparameters["lr"] * (1 + 0.5 * (step % 2))
        scale = 0.6 ** (step % STEPS)
        grads = {name: scale * (params[name] - targets[name] + noise[step % STEPS][name]) for name in params}
        if step < 2:
            grads["0.bias"] = None
        if nonfinite and step == 3:
            grads["0.weight"][0, 0] = np.nan
        params = opt.step(params, grads)
    return params, opt.state


CONTRACT_WORDS = {"dtype": "comes back", "inputs": "in place", "aliasing": "shares memory"}


def contract_broken(optimizer, hyperparameters, rule):
    """Which contract (a key of CONTRACT_WORDS) the first broken one is on a float32 probe run, or None."""
    rng = np.random.default_rng(1)
    params = {"0.weight": rng.normal(size=(3, 4)).astype(np.float32), "0.bias": rng.normal(size=3).astype(np.float32)}
    opt = OPTIMIZERS[optimizer](params, **hyperparameters)
    opt.rule = rule
    for _ in range(3):
        grads = {name: rng.normal(size=param.shape).astype(np.float32) for name, param in params.items()}
        given = contracts.inputs(params, grads, opt.state)
        params = opt.step(params, grads)
        found = contracts.violations(given, params, opt.state)
        if found:
            message = found[0][2]
            return next(name for name, words in CONTRACT_WORDS.items() if words in message)
    return None


def differs(a, b):
    """True when two (params, state) results are not equal to 1e-9 relative (NaN differs from everything)."""
    params_a, state_a = a
    params_b, state_b = b
    for name in params_a:
        if not np.allclose(params_a[name], params_b[name], rtol=1e-9, atol=0, equal_nan=True):
            return True
        if set(state_a.get(name, {})) != set(state_b.get(name, {})):
            return True
        for key, value in state_a.get(name, {}).items():
            if not np.allclose(value, state_b[name][key], rtol=1e-9, atol=0, equal_nan=True):
                return True
    return False


MUTANT_RULES = [pytest.param(mutant, optimizer, id=f"{mutant.id}[{optimizer}]")
                for mutant in MUTANTS for optimizer in mutant.optimizers]


def test_catalogue_is_large_and_ids_are_unique():
    assert len(MUTANTS) >= 25
    assert len({mutant.id for mutant in MUTANTS}) == len(MUTANTS)
    for mutant in MUTANTS:
        assert set(mutant.optimizers) <= set(REFERENCE_RULES), mutant.id
        assert mutant.bug and (mutant.edits or mutant.defaults), mutant.id


@pytest.mark.parametrize("mutant, optimizer", MUTANT_RULES)
def test_mutant_changes_the_rule(mutant, optimizer):
    if mutant.method or mutant.defaults:
        assert class_differs(mutant, optimizer), f"{mutant.id}'s class behaves as refwd's"
        return
    hyperparameters = probe_hyperparameters(mutant, optimizer)
    if mutant.contract:  # right values, broken contract: the contract check sees it on the shell alone
        assert contract_broken(optimizer, hyperparameters, mutant.rule(optimizer)) == mutant.contract, mutant.id
        assert contract_broken(optimizer, hyperparameters, REFERENCE_RULES[optimizer]) is None
        return
    probe = dict(nonfinite=mutant.needs.get("nonfinite", False), steps=300 if mutant.needs.get("long_run") else None)
    with np.errstate(all="ignore"):
        reference = probe_run(optimizer, hyperparameters, REFERENCE_RULES[optimizer], **probe)
        mutated = probe_run(optimizer, hyperparameters, mutant.rule(optimizer), **probe)
    assert differs(reference, mutated), f"{mutant.id} computes what the reference does with {hyperparameters}"


def class_differs(mutant, optimizer):
    """A class mutant, without torch: its defaults, the hyperparameters it accepts or what it loads differ."""
    from refwd_validation.constructor_errors import ERROR_INPUTS, raised
    reference, mutated = OPTIMIZERS[optimizer], mutant.rule(optimizer)
    if mutant.defaults:
        return mutated(["w"]).defaults != reference(["w"]).defaults
    if mutant.method == "__init__":
        return any(raised(reference, ["w"], row.kwargs) is not None and raised(mutated, ["w"], row.kwargs) is None
                   for row in ERROR_INPUTS if row.optimizer == reference.__name__)
    groups = [{"params": ["a"]}, {"params": ["c", "b"]}]        # load_state_dict: two groups of two sizes
    saved = {"state": {0: {"step": 1, "exp_avg": np.zeros(1)}, 1: {"step": 2, "exp_avg": np.ones(2)},
                       2: {"step": 2, "exp_avg": np.ones(3)}},
             "param_groups": [dict(reference(["w"]).defaults, params=[0]),
                              dict(reference(["w"]).defaults, params=[1, 2])]}
    loaded = []
    for cls in (reference, mutated):
        optimizer_ = cls(groups)
        try:
            optimizer_.load_state_dict(saved)
        except (KeyError, ValueError) as error:
            loaded.append(repr(error))
        else:
            loaded.append({name: state["exp_avg"].shape for name, state in optimizer_.state.items()})
    return loaded[0] != loaded[1]


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_probe_sees_no_difference_between_the_reference_and_itself(optimizer):
    hyperparameters = dict(BASE[optimizer], weight_decay=0.1, maximize=True)
    rule = REFERENCE_RULES[optimizer]
    assert not differs(probe_run(optimizer, hyperparameters, rule), probe_run(optimizer, hyperparameters, rule))


def test_reference_rules_are_untouched_by_mutation():
    codes = {key: getattr(rule, "func", rule).__code__ for key, rule in REFERENCE_RULES.items()}
    for mutant in MUTANTS:
        mutant.rules()
    assert {key: getattr(rule, "func", rule).__code__ for key, rule in REFERENCE_RULES.items()} == codes
    assert refwd.optim.Adam.rule is refwd.optim.adam_step
    assert refwd.optim.adamw_step.func is refwd.optim.adam_step
    assert REFERENCE_RULES["adamw"] is refwd.optim.adam_step


def test_an_edit_that_does_not_match_once_fails_loudly():
    stale = Mutant("stale", ("sgd",), "an edit whose text is not in the source", (("no such text", "x"),))
    with pytest.raises(AssertionError, match="occurs 0 times"):
        stale.rule("sgd")
    twice = Mutant("twice", ("sgd",), "an edit whose text occurs twice", (("grad", "x"),))
    with pytest.raises(AssertionError, match="not once"):
        twice.rule("sgd")


def test_adamw_mutant_keeps_decoupled_decay():
    rule = next(mutant for mutant in MUTANTS if mutant.id == "adam-betas-swapped").rule("adamw")
    assert rule is not refwd.optim.adam_step
    # AdamW's groups carry the flag: the mutated adam_step decays decoupled there, as refwd's own AdamW does
    params, grads = {"w": np.array([2.0])}, {"w": np.array([0.0])}
    optimizer = refwd.optim.AdamW(params, lr=0.1, weight_decay=0.5)
    optimizer.rule = rule
    assert optimizer.step(params, grads)["w"] == 2.0 * (1 - 0.1 * 0.5)


def test_fresh_counters_are_not_shared_between_builds():
    mutant = next(mutant for mutant in MUTANTS if mutant.id == "adam-step-shared-by-tensors")
    param, grad = np.ones(2), np.full(2, 0.5)
    first = mutant.rule("adam")(param, grad, {}, lr=0.1)[1]["step"]
    again = mutant.rule("adam")(param, grad, {}, lr=0.1)[1]["step"]
    assert first == again == 1


# ------------------------------------------------------------------------------------------------ with the harness
# The cases a mutant runs on: float64, for-loop, CPU (the sharpest and cheapest comparison), from the matrix, and
# not a case where torch is documented to raise. Lock-step: the cheapest case that shows the bug. Free-running:
# the cheapest free-running case that shows it, cut to FREE_STEPS (every mutant that check catches shows by
# step 3; the full 100 steps are the matrix's business).
POOL = [case for case in CASES
        if case.device == "cpu" and case.dtype == "float64" and case.impl == "forloop" and not case.expect_error]
# A dtype bug shows only in float32: its mutants run on the float32 twins of the pool's cases.
POOL_F32 = [case for case in CASES
            if case.device == "cpu" and case.dtype == "float32" and case.impl == "forloop" and not case.expect_error]
# The generated parts' cases (defaults, long runs, non-finite injections) come in one dtype and implementation each:
# their mutants run on any of them.
POOL_ANY = [case for case in CASES if case.device == "cpu" and not case.expect_error]
ANY_DTYPE_NEEDS = ("defaults", "long_run", "nonfinite")
FREE_STEPS = 10


def pool(mutant):
    if any(mutant.needs.get(need) for need in ANY_DTYPE_NEEDS):
        return POOL_ANY
    return POOL_F32 if mutant.needs.get("float32") else POOL


LOCKSTEP_CASES = {mutant.id: cheapest_case(mutant, [case for case in pool(mutant) if not case.free_steps])
                  for mutant in MUTANTS}
FREE_CASES = {mutant.id: cheapest_case(mutant, [case for case in pool(mutant) if case.free_steps])
              for mutant in MUTANTS}


def shortened(case):
    return dataclasses.replace(case, steps=min(case.steps, FREE_STEPS), free_steps=min(case.free_steps, FREE_STEPS))


def cases_used():
    used = {case.id: case for case in LOCKSTEP_CASES.values() if case is not None}
    used.update({case.id: shortened(case) for case in FREE_CASES.values() if case is not None})
    return [pytest.param(case, id=case_id) for case_id, case in sorted(used.items())]


@pytest.fixture
def run_case():
    pytest.importorskip("torch")
    from refwd_validation.harness import run_case
    return run_case


@pytest.fixture
def reference_in_lockstep(monkeypatch):
    """Make run_case give the injected rule to the free-running optimizer only, refwd's own to the lock-step one.

    The harness builds the lock-step optimizer first and the free-running one second; the list records the
    rules it asked for, so a test can assert that both were built.
    """
    from refwd_validation import scenario
    built = []
    original = scenario.refwd_optimizer

    def refwd_optimizer(case, names, rule=None):
        built.append(rule)
        return original(case, names, rule if len(built) == 2 else None)

    monkeypatch.setattr(scenario, "refwd_optimizer", refwd_optimizer)
    return built


@pytest.mark.torch
@pytest.mark.parametrize("mutant", MUTANTS, ids=[mutant.id for mutant in MUTANTS])
def test_lockstep_catches_the_mutant(run_case, mutant):
    case = LOCKSTEP_CASES[mutant.id]
    assert case is not None, (f"no lock-step case of the matrix shows {mutant.id} (needs {mutant.needs}): "
                              "add one to validation/cases.py")
    result = run_case(case, rules=mutant.rules())
    assert result.status == "fail", f"{mutant.id} on {case.id}: {result.status}: {result.detail}"
    assert result.failure.check == mutant.caught_by[0], result.detail
    if mutant.contract:  # the contract is what fails first, not a value
        assert result.failure.message.startswith("contract:"), result.detail
        assert CONTRACT_WORDS[mutant.contract] in result.failure.message, result.detail


FREE_CAUGHT = [mutant for mutant in MUTANTS if FREE_RUNNING in mutant.caught_by]


@pytest.mark.torch
@pytest.mark.parametrize("mutant", FREE_CAUGHT, ids=[mutant.id for mutant in FREE_CAUGHT])
def test_free_running_catches_the_mutant_on_its_own(run_case, reference_in_lockstep, mutant):
    case = FREE_CASES[mutant.id]
    assert case is not None, f"{mutant.id} claims the free-running check, but no free-running case shows it"
    result = run_case(shortened(case), rules=mutant.rules())
    assert len(reference_in_lockstep) == 2, "the harness no longer builds one lock-step and one free optimizer"
    assert result.status == "fail", f"{mutant.id} on {case.id}: {result.status}: {result.detail}"
    assert result.failure.check == FREE_RUNNING, result.detail


def test_catalogue_names_every_check_that_has_a_case_for_the_bug():
    for mutant in MUTANTS:
        assert mutant.caught_by[0] in (LOCKSTEP, Check.STATE_DICT, Check.CONSTRUCTOR), mutant.id
        # the free-running check compares values only: a contract bug (right values) is the lock-step's
        has_free_case = FREE_CASES[mutant.id] is not None and not mutant.contract
        assert (FREE_RUNNING in mutant.caught_by) == has_free_case, (
            f"{mutant.id}: a free-running case {'shows' if has_free_case else 'no longer shows'} it; "
            "update its caught_by")


@pytest.mark.torch
@pytest.mark.parametrize("case", cases_used())
def test_reference_passes_the_cases_that_catch_mutants(run_case, case):
    result = run_case(case)
    assert result.status == "pass", f"false alarm on {case.id}: {result.status}: {result.detail}"
