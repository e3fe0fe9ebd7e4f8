"""times, record, fuzz, check, watch: the commands' run times and their own output, each with its machine's stamp.

Timings are quoted with their machine, its load and the date, never compared; the fuzzer's counts are figures too.
"""
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

from . import ROOT
from .commands import refwd, run, stamp
from .formats import rounded, words

FUZZ_RUNS = ((400, 11), (400, 12), (300, 5), (300, 6), (300, 7))      # (configurations, seed), as docs/oracle.md
QUICK_REPEATS = 3


def measure_times():
    """`refwd validate --quick` (timed QUICK_REPEATS times), the compiled cases with a cold and a warm inductor
    cache, and the fixed cost of a run (importing torch and its first optimizer)."""
    info = stamp()
    quick, peaks, in_cases = [], [], []
    with tempfile.TemporaryDirectory() as directory:
        for number in range(QUICK_REPEATS):
            path = Path(directory) / f"quick-{number}.json"
            _, _, seconds, peak = run(refwd("validate", "--quick", "--device", "cpu", "-q", "--json", path))
            quick.append(round(seconds, 1))
            peaks.append(peak)
            in_cases.append(sum(case["seconds"] for case in json.loads(path.read_text())["cases"]))
        cache = Path(directory) / "inductor"
        compiled = []
        for _ in ("cold", "warm"):
            compiled.append(run(refwd("validate", "--impl", "compiled", "--device", "cpu", "-q"),
                                env={"TORCHINDUCTOR_CACHE_DIR": str(cache)})[2])
    fixed = [float(run([sys.executable, "-c", "import time; started = time.perf_counter(); import torch; "
                        "torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1); "
                        "print(time.perf_counter() - started)"])[0]) for _ in range(3)]
    return {"timing": {
        "quick": {**info, "runs_s": sorted(quick), "median_s": rounded(statistics.median(quick), 4),
                  "in_cases_s": rounded(statistics.median(in_cases), 3), "peak_rss_mib": round(max(peaks) / 2 ** 20)},
        "compile": {**info, "cold_s": rounded(compiled[0], 3), "warm_s": rounded(compiled[1], 3),
                    "cold_extra_s": rounded(compiled[0] - compiled[1], 3)},
        "fixed": {**info, "import_and_first_optimizer_s": rounded(statistics.median(fixed), 3)}}}


def measure_record():
    """`refwd validate --record` of the CPU matrix, and `--against` the golden recording: their run times."""
    info = stamp()
    with tempfile.TemporaryDirectory() as directory:
        record = run(refwd("validate", "--record", Path(directory) / "recording", "--device", "cpu", "-q"))[2]
    against = run(refwd("validate", "--against", ROOT / "tests" / "data" / "golden", "--device", "cpu", "-q"))[2]
    return {"timing": {"record": {**info, "record_s": rounded(record, 3), "against_s": rounded(against, 3)}}}


FUZZ_LINE = re.compile(r"(?P<run>\d+) configurations in (?P<seconds>[\d.]+) s \((?P<rate>\d+) per minute\)\s*\n"
                       r"\s*passed (?P<passed>\d+), failed (?P<failed>\d+), rejected by both (?P<rejected>\d+), "
                       r"known torch defects (?P<known>\d+)")


def measure_fuzz(runs=FUZZ_RUNS):
    """`refwd validate --fuzz N --seed S` for each (N, S) of ``runs``: the counts, and the time per run."""
    info = stamp()
    counts, times = {}, {}
    for configurations, seed in runs:
        stdout = run(refwd("validate", "--fuzz", configurations, "--seed", seed, "-q"), check=False)[0]
        found = FUZZ_LINE.search(stdout)
        if found is None:
            raise RuntimeError(f"refwd validate --fuzz {configurations} --seed {seed}: no summary in\n{stdout}")
        counts[f"seed{seed}"] = {"configurations": int(found["run"]), "passed": int(found["passed"]),
                                 "failed": int(found["failed"]), "rejected": int(found["rejected"]),
                                 "known_defects": int(found["known"])}
        times[f"seed{seed}"] = {"seconds": float(found["seconds"]), "per_minute": int(found["rate"])}
    rates = [value["per_minute"] for value in times.values()]
    quiet = [seed for (_, seed) in runs[2:] if counts[f"seed{seed}"]["failed"] == 0]
    return {"fuzz": {**counts, "quiet_seeds": words(map(str, quiet)),
                     "quiet_configurations": runs[2][0] if len(runs) > 2 else None},
            "timing": {"fuzz": {**info, **times, "per_minute_range": f"{min(rates):,} to {max(rates):,}"}}}


def measure_check():
    """`refwd check torch.optim:AdamW --as adamw --quick` against `refwd validate --quick --optimizer adamw`."""
    info = stamp()
    check, validate, cases = [], [], None
    for _ in range(3):
        stdout, _, seconds, _ = run(refwd("check", "torch.optim:AdamW", "--as", "adamw", "--quick"),
                                    check=False)
        check.append(seconds)
        found = re.search(r": (\d+) cases in", stdout)
        cases = int(found.group(1)) if found else None
        validate.append(run(refwd("validate", "--quick", "--optimizer", "adamw", "--device", "cpu", "-q"))[2])
    return {"timing": {"check": {**info, "cases": cases, "check_s": rounded(statistics.median(check), 3),
                                 "validate_s": rounded(statistics.median(validate), 3)}}}


def measure_watch(steps=10):
    """benchmarks/bench_watch.py: its Markdown table, each row's figures, and the issue's targets on the 10 M model
    (the full check within 3 times the plain step, ``sample=0.01`` within 1.2 times), met or not, per optimizer."""
    info = stamp()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "watch.json"
        run([sys.executable, "benchmarks/bench_watch.py", "--steps", steps, "--json", path],
            env={"PYTHONPATH": str(ROOT)})
        measured = json.loads(path.read_text())
    large = [row for row in measured["rows"] if row["model"].startswith("10 M")]
    targets = {}
    for mode, target in (("full_ratio", 3.0), ("sampled_ratio", 1.2)):
        met = [f"{row['optimizer']} ({row[mode]:.2f})" for row in large if row[mode] <= target]
        unmet = [f"{row['optimizer']} ({row[mode]:.2f})" for row in large if row[mode] > target]
        targets[mode] = {"met": "; ".join(met) or "none", "unmet": "; ".join(unmet) or "none"}
    return {"timing": {"watch": {**info, "command": f"python benchmarks/bench_watch.py --steps {steps}",
                                 "table": measured["table"], "rows": measured["rows"], "targets": targets,
                                 "large_peak_range": _range(row["peak_mib"] for row in large),
                                 "large_size_range": _range(row["size_mib"] for row in large)}}}


def _range(values):
    values = list(values)
    return f"{min(values):.0f} to {max(values):.0f}" if values else None
