"""The torch version sweep: `refwd validate` and `refwd validate --against tests/data/golden` under each torch.

    python docs/make_version_sweep.py run 2.4.1 2.6.0 ...   # one venv at a time under $TMPDIR, removed after use;
                                                          # writes docs/data/version-sweep/<version>.json
    python docs/make_version_sweep.py render                # docs/version-sweep.md from those files

Each run installs ``torch==<version>`` with refwd's own dependencies into a fresh venv (no torch of the caller's is
used), runs the whole CPU matrix and the replay of the golden recording, and keeps the counts, every case that did
not plainly pass, and the drift per case status. The Markdown page is made from the JSON files alone, so it can be
re-rendered (and checked by tests/test_version_sweep_doc.py) without torch.
"""
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "version-sweep"
PAGE = ROOT / "docs" / "version-sweep.md"
GOLDEN = ROOT / "tests" / "data" / "golden"
BASELINE = "2.13.0"      # the version the golden recording was made with


def _run(command, log):
    started = time.perf_counter()
    process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(f"$ {' '.join(map(str, command))}\n{process.stdout}\n[exit {process.returncode}]\n")
    log.flush()
    return process.returncode, time.perf_counter() - started


def sweep_one(version):
    """Install torch ``version`` in a new venv, run the matrix and the replay there, return the summary."""
    venv = Path(tempfile.mkdtemp(prefix=f"refwd-torch-{version}-"))
    DATA.mkdir(parents=True, exist_ok=True)
    out = venv / "out"
    out.mkdir()
    python = venv / "bin" / "python"
    with open(DATA / f"{version}.log", "w", encoding="utf-8") as log:
        try:
            _run([sys.executable, "-m", "venv", str(venv)], log)
            code, install_seconds = _run([python, "-m", "pip", "install", "-q", f"torch=={version}"], log)
            if code:
                raise RuntimeError(f"pip install torch=={version} failed (see {DATA / (version + '.log')})")
            _run([python, "-m", "pip", "install", "-q", "-e", f"{ROOT}[validate]", f"torch=={version}"], log)
            validate_code, validate_seconds = _run(
                [venv / "bin" / "refwd", "validate", "--device", "cpu", "-q", "--json", out / "validate.json"], log)
            against_code, against_seconds = _run(
                [venv / "bin" / "refwd", "validate", "--device", "cpu", "-q", "--against", GOLDEN, "--jobs", "2",
                 "--json", out / "against.json"], log)
            validate = json.loads((out / "validate.json").read_text())
            against = json.loads((out / "against.json").read_text())
        finally:
            shutil.rmtree(venv, ignore_errors=True)
    summary = {
        "torch": validate["environment"].get("torch"), "python": validate["environment"].get("python"),
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "validate": {"exit": validate_code, "seconds": round(validate_seconds, 1),
                     "counts": validate["summary"] | {"worst_ulps_by_optimizer": None},
                     "worst_ulps_by_optimizer": validate["summary"]["worst_ulps_by_optimizer"],
                     "unsupported_reasons": _reasons(case.get("unsupported") for case in validate["cases"]
                                                     if case["status"] == "unsupported"),
                     "fallbacks": _reasons(fallback for case in validate["cases"]
                                           for fallback in case.get("fallbacks", ())),
                     "not_passed": [{key: case[key] for key in ("id", "status", "error", "note")}
                                    | {"failure": (case["failure"] or {}).get("message"),
                                       "known_defect": (case["known_defect"] or {}).get("id"),
                                       "unsupported": case.get("unsupported")}
                                    for case in validate["cases"] if case["status"] != "pass" or case["note"]]},
        "against": {"exit": against_code, "seconds": round(against_seconds, 1), "verdict": against["verdict"],
                    "counts": against["counts"],
                    "reference_passing": against.get("reference_passing"),
                    "unsupported_reasons": _reasons(case["error"] for case in against["cases"]
                                                    if case["comparison"] == "unsupported"),
                    "not_identical": [{"id": case["id"], "comparison": case["comparison"], "error": case["error"],
                                       "worst_ulps": case["worst_ulps"],
                                       "reference": (case["reference"] or {}).get("status")}
                                      for case in against["cases"] if case["comparison"] != "identical"]},
    }
    summary["validate"]["counts"].pop("worst_ulps_by_optimizer")
    (DATA / f"{version}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _reasons(texts):
    """{text: how many times}, in first-seen order."""
    out = {}
    for text in texts:
        out[text] = out.get(text, 0) + 1
    return out


def load():
    """The sweep's summaries, oldest torch first."""
    from packaging.version import Version
    summaries = [json.loads(path.read_text(encoding="utf-8")) for path in DATA.glob("*.json")]
    return sorted(summaries, key=lambda summary: Version(summary["torch"].split("+")[0]))


def render(summaries):
    """docs/version-sweep.md from the summaries."""
    lines = ["# torch version sweep", "",
             "Every torch in refwd's supported range that installs here, run as a new user would: a fresh venv with "
             "`pip install torch==X` and refwd, then `refwd validate` (the whole CPU matrix) and `refwd validate "
             f"--against tests/data/golden` (the replay of the recording made with torch {BASELINE}). Measured by "
             "`python docs/make_version_sweep.py run VERSION ...` (2.13.0 is the local CPU build, the others are the "
             "CUDA builds pip installs, run on a CPU machine); this page is rendered from `docs/data/version-sweep/*.json` by `python "
             "docs/make_version_sweep.py render`, and `tests/test_version_sweep_doc.py` checks that it is.", "",
             "A case the installed torch cannot run (an argument its optimizer lacks, a kernel it has not for the "
             "dtype) is *unsupported*: probed at run time (`validation/capabilities.py`), counted apart, and "
             "neither a pass nor a failure. Known defects are upstream-confirmed torch bugs "
             "(`validation/defects.py`); documented differences are the findings of docs/oracle.md. The times are "
             "of a 2-core machine doing other work at the same time: a record, not a benchmark.", "",
             "| torch | measured | cases | passed | unsupported | known defects | documented differences | failed "
             "| errors | exit | vs the recording: bit-identical | within tolerance | beyond | replay errors | "
             "not reproducible when recorded | not compared (unsupported) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for summary in summaries:
        counts, drift = summary["validate"]["counts"], summary["against"]["counts"]
        lines.append(
            f"| {summary['torch']} | {summary['measured']} | {counts['run']} | {counts['passed'] - counts['expected_errors']} "
            f"| {counts.get('unsupported', 0)} | {counts['known_defects']} | {counts['expected_errors']} "
            f"| {counts['failed']} | {counts['errors']} | {summary['validate']['exit']} | {drift.get('identical', 0)} "
            f"| {drift.get('within', 0)} | {drift.get('beyond', 0)} | {drift.get('error', 0)} "
            f"| {drift.get('nondeterministic', 0)} | {drift.get('unsupported', 0)} |")
    for summary in summaries:
        validate, against = summary["validate"], summary["against"]
        lines += ["", f"## torch {summary['torch']}", "",
                  f"`refwd validate`: exit {validate['exit']} in {validate['seconds']} s; `--against`: exit "
                  f"{against['exit']} in {against['seconds']} s (Python {summary['python']}).", "",
                  f"Drift verdict: {against['verdict']}"]
        for title, reasons in (("Unsupported by this torch", validate.get("unsupported_reasons", {})),
                               ("Written out with ops this torch has", validate.get("fallbacks", {}))):
            if reasons:
                lines += ["", f"{title}:", ""] + [f"- {count} case(s): {reason}" for reason, count in reasons.items()]
        failing = [case for case in validate["not_passed"] if case["status"] in ("fail", "error")]
        defects = [case for case in validate["not_passed"] if case["status"] == "known-defect"]
        if defects:
            lines += ["", "Known torch defects:", ""] + [f"- `{case['id']}`: {case['known_defect']}" for case in defects]
        if failing:
            lines += ["", "Failures and errors:", ""] + [
                f"- `{case['id']}` ({case['status']}): {case['error'] or case['failure']}" for case in failing]
        changed = [case for case in against["not_identical"] if case["comparison"] not in ("unsupported",)]
        if changed:
            lines += ["", "Changed against the recording:", ""] + [
                f"- `{case['id']}`: {case['comparison']}" + (f", worst {case['worst_ulps']:.3g} ULP"
                                                             if case["worst_ulps"] else "")
                + (f", {case['error']}" if case["error"] else "") for case in changed]
    return "\n".join(lines) + "\n"


def main(argv):
    if argv[:1] == ["run"] and argv[1:]:
        for version in argv[1:]:
            summary = sweep_one(version)
            print(version, summary["validate"]["counts"], summary["against"]["counts"], flush=True)
    elif argv == ["render"]:
        PAGE.write_text(render(load()), encoding="utf-8")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
