"""mutants: every mutant of the catalogue through the harness, on the cases tests/test_mutants.py picks; and that
test file's size and run time."""
import os
import re
import sys

from .commands import run, stamp
from .formats import PATH_KEYS, rounded


GENERATED_PARTS = ("flags", "defaults", "long", "nonfinite", "roundtrip", "constructor")


def failure_cell(case, result):
    """The catalogue table's cell: the case (its dtype and impl where they are not float64 and the for-loop, or where
    the case comes from the generated matrix) and the first failure the harness reported."""
    generated = case.config.split("-")[0] in GENERATED_PARTS
    short = {"float64": "f64", "float32": "f32"}.get(case.dtype, case.dtype)
    where = f"`{case.config}`"
    if generated:
        where += f" ({short}, {case.impl})"
    elif (case.dtype, case.impl) != ("float64", "forloop"):
        where += f" ({short})" if case.impl == "forloop" else f" ({short}, {case.impl})"
    failure = result.failure
    if failure is None:
        return f"{where}: not caught ({result.status})"
    text = f"step {failure.step}, {failure.key}" + (f": {failure.message}" if failure.message else "")
    if generated:
        text = f"{failure.check}, {text}"
    return f"{where}: {text}".replace("|", "\\|")


def measure_mutants():
    """Each mutant in the lock-step check, in the free-running check alone, and on each of torch's other paths."""
    from unittest import mock

    import test_mutants   # tests/test_mutants.py: the cases each mutant runs on are the test's
    from refwd.optim import sgd_step
    from refwd_validation import scenario
    from refwd_validation.cases import CASE_IDS, CASES
    from refwd_validation.harness import run_case
    from refwd_validation.mutants import MATRIX_MUTANTS, MUTANTS
    from refwd_validation.mutation import FREE_RUNNING, cheapest_case
    from refwd_validation.twin import one_thread

    first, lockstep_caught, steps, long_steps, free_total, free_caught = {}, 0, {}, [], 0, 0
    with one_thread():
        for mutant in MUTANTS:
            case = test_mutants.LOCKSTEP_CASES[mutant.id]
            result = run_case(case, rules=mutant.rules())
            caught = result.status == "fail" and result.failure.check == mutant.caught_by[0]
            lockstep_caught += caught
            if caught and mutant.needs.get("long_run"):
                long_steps.append(result.failure.step)
            elif caught and not mutant.needs.get("constructor"):    # a constructor check has no step
                steps[result.failure.step] = True
            cells = {"lockstep": failure_cell(case, result), "free_running": "—"}
            free_case = test_mutants.FREE_CASES[mutant.id]
            if mutant.contract:
                cells["free_running"] = "— (contract)"
            elif free_case is not None:
                free_total += 1
                built = []
                original = scenario.refwd_optimizer

                def lockstep_keeps_the_reference(case_, names, rule=None, built=built, original=original):
                    built.append(rule)
                    return original(case_, names, rule if len(built) == 2 else None)

                with mock.patch.object(scenario, "refwd_optimizer", lockstep_keeps_the_reference):
                    free = run_case(test_mutants.shortened(free_case), rules=mutant.rules())
                free_caught += free.status == "fail" and free.failure.check == FREE_RUNNING
                cells["free_running"] = failure_cell(free_case, free)
            first[mutant.id] = cells
        paths = {}
        for path in ("tensor-lr", "differentiable", "compiled", "grad-scaler"):
            pool = [case for case in CASES if case.device == "cpu" and case.impl == path and not case.expect_error]
            total, caught, missed = 0, 0, []
            for mutant in MUTANTS:
                case = cheapest_case(mutant, pool)
                if case is None:
                    continue
                total += 1
                if run_case(case, rules=mutant.rules()).status == "fail":
                    caught += 1
                else:
                    missed.append(f"`{mutant.id}`")
            paths[PATH_KEYS.get(path, path)] = {"caught": caught, "total": total, "missed": ", ".join(missed)}
        doubled = run_case(CASE_IDS["sgd-plain-f64-forloop-cpu"],
                           rules={"sgd": lambda param, grad, state, **hyper: sgd_step(
                               param, grad, state, **dict(hyper, lr=2 * hyper["lr"]))})
    shown = sorted(steps)
    return {"mutants": {
        "all": len(MUTANTS), "lockstep_caught": lockstep_caught,
        "free_running_total": free_total, "free_running_caught": free_caught,
        "no_free_running_case": len(MUTANTS) - free_total,
        "flags_no_free_running_case": sum(test_mutants.FREE_CASES[mutant.id] is None and not mutant.contract
                                          and mutant not in MATRIX_MUTANTS for mutant in MUTANTS),
        "first_failure_steps": (", ".join(map(str, shown[:-1])) + " or " + str(shown[-1])) if len(shown) > 1
        else str(shown[0]),
        "long_run_steps": long_steps,
        "first": first, "paths": paths,
        "example_failure": f"```\nfailures:\n  {doubled.case.id} [{doubled.status}]: {doubled.detail}\n```",
    }}


def measure_mutant_tests():
    """tests/test_mutants.py: how many tests, how many need torch, and its run time with and without torch's."""
    info = stamp()
    collected = {}
    for name, marker in (("all", []), ("torch", ["-m", "torch"])):
        stdout = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                      "tests/test_mutants.py", *marker])[0]
        found = re.search(r"(\d+)(?:/(\d+))? tests? collected", stdout)
        collected[name] = int(found.group(1))
    times = {}
    for name, marker in (("with_torch", []), ("without_torch", ["-m", "not torch"])):
        started = os.times()
        times[name] = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_mutants.py",
                           *marker])[2]
        if name == "with_torch":
            ended = os.times()
            times["cpu_s"] = ended.children_user + ended.children_system - started.children_user - \
                started.children_system
    return {"timing": {"mutant_tests": {**info, "tests": collected["all"], "torch_tests": collected["torch"],
                                        "wall_s": rounded(times["with_torch"], 3),
                                        "cpu_s": rounded(times["cpu_s"], 3),
                                        "without_torch_s": rounded(times["without_torch"], 3)}}}
