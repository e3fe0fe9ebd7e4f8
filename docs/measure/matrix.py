"""matrix: one `refwd validate --json` run of the CPU matrix, its worst ULPs, the scenario table and the defects."""
import json
import statistics
import tempfile
from pathlib import Path

from .commands import environment_key, refwd, run, stamp
from .counts import TORCH_FOUR, hand_written, part_of
from .formats import PATH_KEYS, bracket, key_of, rounded, span_range

CHECK_KEYS = {"lockstep": "lockstep", "gradient": "gradient", "free-running": "free_running",
              "state-dict": "state_dict", "constructor": "constructor"}


def passing(cases):
    """The cases that passed plainly: not failures, known defects or documented torch errors and differences."""
    return [case for case in cases if case["status"] == "pass" and not case["note"]]


def worst(cases, check=None, quantities=None, exclude=()):
    """The worst ULPs of the error scale over ``cases`` (JSON entries), for one check and some quantities."""
    values = [float(entry["ulps"]) for case in cases for entry in case["worst"]
              if (check is None or entry["check"] == check)
              and (quantities is None or entry["quantity"] in quantities) and entry["quantity"] not in exclude]
    return max(values, default=None)


def worst_relative(cases, check, quantities=None, exclude=()):
    """The same differences as relative errors in ULPs of the dtype: |Δ| / (ε·max(|refwd|, |torch|))."""
    from refwd_validation.tolerance import EPS
    values = [float(entry["rel"]) / EPS[case["dtype"]] for case in cases for entry in case["worst"]
              if entry["check"] == check and (quantities is None or entry["quantity"] in quantities)
              and entry["quantity"] not in exclude]
    return max(values, default=None)


# the scenario table's columns: (check, quantities or None for all, quantities left out)
SCENARIO_COLUMNS = (("lock-step param", "lockstep", ("param",), ()),
                    ("lock-step state", "lockstep", None, ("param", "step")),
                    ("gradient", "gradient", ("grad",), ()),
                    ("loss", "gradient", ("loss",), ()),
                    ("free-running param", "free-running", ("param",), ()),
                    ("free-running state", "free-running", None, ("param", "step", "loss")))


def scenario_table(cases):
    """docs/oracle.md's table of the hand-written scenarios: worst ULPs of the error scale per optimizer, dtype and
    quantity, and in brackets the relative error in ULPs of the dtype."""
    lines = ["| optimizer | dtype | " + " | ".join(title for title, *_ in SCENARIO_COLUMNS) + " |",
             "|---|---|" + "---|" * len(SCENARIO_COLUMNS)]
    for optimizer in TORCH_FOUR:
        for dtype in ("float64", "float32", "float16", "bfloat16"):
            chosen = [case for case in cases if case["optimizer"] == optimizer and case["dtype"] == dtype]
            cells = []
            for _, check, quantities, exclude in SCENARIO_COLUMNS:
                ulps = worst(chosen, check, quantities, exclude)
                cells.append("–" if ulps is None else
                             f"{ulps:.2f} ({bracket(worst_relative(chosen, check, quantities, exclude))})")
            lines.append(f"| {optimizer} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def abridged_summary(stdout, width=118):
    """`refwd validate`'s summary as docs/oracle.md shows it: the counts and the worst ULPs in full, the first entry
    of each list after them, long lines cut."""
    lines, out, shown = stdout.rstrip().splitlines(), [], {}
    section = None
    for line in lines:
        if not line.startswith(" ") and not line.startswith("refwd validate") and not line.startswith("result"):
            section = line
            out.append(line)
            continue
        if section is None or line.startswith("result"):
            out.append(line)
            continue
        entry = not line.startswith("      ")       # an entry's own line, not its detail
        shown[section] = shown.get(section, 0) + entry
        if shown[section] == 1:
            out.append(line if len(line) <= width else line[:width - 4].rsplit(" ", 1)[0] + " ...")
        elif shown[section] == 2 and entry:
            out.append("  ...")
    return "```\n" + "\n".join(out) + "\n```"


def matrix_figures(report):
    """The figures of one `refwd validate --json` report of the CPU matrix."""
    from refwd_validation.cases import CASE_IDS, KERNELS, TENSOR_SCALAR_PATHS
    cases = report["cases"]
    good = passing(cases)
    by_optimizer = {}
    for optimizer in dict.fromkeys(case["optimizer"] for case in good):
        chosen = [case for case in good if case["optimizer"] == optimizer]
        by_optimizer[optimizer] = {CHECK_KEYS[check]: rounded(value) for check in CHECK_KEYS
                                   if (value := worst(chosen, check)) is not None}
    by_check = {CHECK_KEYS[check]: rounded(value) for check in CHECK_KEYS if (value := worst(good, check)) is not None}
    kinds = {}
    for case in good:
        kinds.setdefault(part_of(CASE_IDS[case["id"]]), []).append(case)
    impls = {}
    for case in good:
        impls.setdefault(PATH_KEYS.get(case["impl"], case["impl"]), []).append(case)
    defects = {key_of(case["id"]): rounded(float(case["failure"]["ulps"]))
               for case in cases if case["status"] == "known-defect"}
    scenarios = [case for case in good if hand_written(CASE_IDS[case["id"]]) and case["optimizer"] in TORCH_FOUR]

    def lockstep_param(optimizers, impls_, dtypes):
        return [value for optimizer in optimizers for impl in impls_ for dtype in dtypes
                if (value := worst([case for case in scenarios if case["optimizer"] == optimizer
                                    and case["impl"] == impl and case["dtype"] == dtype], "lockstep", ("param",)))
                is not None]

    lowp = ("float16", "bfloat16")
    return {
        "environment": environment_key(report["environment"]),
        "cases": len(cases), "passed": report["summary"]["passed"], "known_defects": report["summary"]["known_defects"],
        "documented": report["summary"]["expected_errors"],
        "worst": by_optimizer,
        "worst_check": by_check,
        "worst_overall": rounded(worst(good)),
        "worst_kind": {kind: rounded(worst(chosen)) for kind, chosen in kinds.items() if worst(chosen) is not None},
        "worst_impl_lockstep": {impl: rounded(worst(chosen, "lockstep")) for impl, chosen in impls.items()},
        "compiled_sgd_lockstep": rounded(worst([case for case in impls.get("compiled", [])
                                                if case["optimizer"] == "sgd"], "lockstep")),
        "tensor_scalar_adam": rounded(worst([case for case in good if case["impl"] in TENSOR_SCALAR_PATHS
                                             and case["optimizer"] in ("adam", "adamw")])),
        "defects": defects,
        "defects_min": rounded(min(defects.values())) if defects else None,
        "defects_max": rounded(max(defects.values())) if defects else None,
        "scenarios": {
            "passing": len(scenarios),
            "table": scenario_table(scenarios),
            "relative_max": {
                "lockstep_param": bracket(worst_relative(scenarios, "lockstep", ("param",))),
                "lockstep_state": bracket(worst_relative(scenarios, "lockstep", None, ("param", "step"))),
                "gradient": bracket(worst_relative(scenarios, "gradient", ("grad",))),
                "free_running_state": bracket(worst_relative(scenarios, "free-running", None,
                                                             ("param", "step", "loss"))),
            },
            "lowp_forloop_foreach": span_range(lockstep_param(TORCH_FOUR, ("forloop", "foreach"), lowp)),
            "fused_f64_f32": span_range(lockstep_param(("sgd", "adam", "adamw"), ("fused",), ("float64", "float32"))),
            "fused_adam_lowp": f"{max(lockstep_param(('adam', 'adamw'), ('fused',), lowp)):.2f}",
            "forloop_lowp": span_range(lockstep_param(TORCH_FOUR, ("forloop",), lowp)),
        },
        "kernels": list(KERNELS),
    }


def measure_matrix(repeat=1):
    """The CPU matrix, run ``repeat`` times (the figures from the first run, every run timed)."""
    runs, figures, summary, long_share, long_each, peaks, in_cases = [], None, None, None, None, [], []
    info = stamp()
    with tempfile.TemporaryDirectory() as directory:
        for number in range(repeat):
            path = Path(directory) / f"matrix-{number}.json"
            stdout, _, seconds, peak = run(refwd("validate", "--device", "cpu", "-q", "--json", path))
            report = json.loads(path.read_text())
            runs.append(round(seconds, 1))
            peaks.append(peak)
            in_cases.append(sum(case["seconds"] for case in report["cases"]))
            if figures is None:
                figures, summary = matrix_figures(report), abridged_summary(stdout)
                longs = [case["seconds"] for case in report["cases"] if case["id"].startswith("long-")]
                long_share, long_each = sum(longs) / in_cases[0], statistics.mean(longs)
    timing = {**info, "runs_s": runs, "median_s": rounded(statistics.median(runs), 4),
              "in_cases_s": rounded(statistics.median(in_cases), 3), "peak_rss_mib": round(max(peaks) / 2 ** 20),
              "long_share": rounded(long_share, 3), "long_each_s": rounded(long_each, 3), "summary": summary}
    return {"matrix": figures, "timing": {"matrix": timing}}
