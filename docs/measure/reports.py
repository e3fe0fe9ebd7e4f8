"""reports, sweep, recording: figures read from the files the runs wrote (no torch)."""
import json

from . import DOCS, ROOT
from .formats import rounded, words


REPORTS = {"upgrade": "torch-2.13.0-to-2.14.1-cpu", "aten_default": "torch-2.13.0-to-2.14.1-cpu-aten-default",
           "downgrade": "torch-2.14.1-to-2.13.0-cpu"}


def measure_reports():
    out = {}
    for key, name in REPORTS.items():
        report = json.loads((DOCS / "reports" / f"{name}.json").read_text())
        cases = report["cases"]
        fixed = [case for case in cases if case["fixed"]]
        within = [case["worst_ulps"] for case in cases if case["comparison"] == "within"]
        out[key] = {**{name_: report["counts"][name_] for name_ in ("identical", "within", "beyond")},
                    "cases": len(cases), "passing": report["reference_passing"], "fixes": len(fixed),
                    "known_defects": sum(case["reference"]["status"] == "known-defect" for case in cases),
                    "worst_within": rounded(max(within)) if within else None,
                    "fixed_worst_now": rounded(max(case["reference"]["worst_ulps"] for case in fixed)) if fixed
                    else None,
                    "fixed_worst_recorded": rounded(max(case["reference_when_recorded"]["worst_ulps"]
                                                        for case in fixed)) if fixed else None,
                    "beyond_worst_reference": rounded(max((float(case["reference"]["worst_ulps"]) for case in cases
                                                           if case["comparison"] == "beyond"), default=0.0))}
    return {"reports": out}


def _version(text):
    return tuple(int(part) for part in text.split("+")[0].split("."))


def measure_sweep():
    runs = sorted((json.loads(path.read_text()) for path in (DOCS / "data" / "version-sweep").glob("*.json")),
                  key=lambda run_: _version(run_["torch"]))
    plain = lambda run_: run_["torch"].split("+")[0]   # noqa: E731
    failing = [plain(run_) for run_ in runs if run_["validate"]["counts"]["known_defects"]]
    fixed = [plain(run_) for run_ in runs if not run_["validate"]["counts"]["known_defects"]]
    lacking = [plain(run_) for run_ in runs if any("decoupled_weight_decay" in reason for reason in
                                                   run_["validate"]["unsupported_reasons"])]
    having = [plain(run_) for run_ in runs if plain(run_) not in lacking]
    written_out = [plain(run_) for run_ in runs if run_["validate"]["fallbacks"]]
    return {"sweep": {"versions": len(runs), "oldest": plain(runs[0]), "newest": plain(runs[-1]),
                      "defect_first": failing[0], "defect_last": failing[-1], "fixed": words(fixed),
                      "fixed_first": fixed[0], "decoupled_lacking": words(lacking),
                      "decoupled_last_lacking": lacking[-1],
                      "decoupled_first": having[0],
                      "mse_written_out": words(written_out),
                      "mse_native_first": next(plain(run_) for run_ in runs if not run_["validate"]["fallbacks"]
                                               and _version(run_["torch"]) > _version(written_out[-1]))}}


def measure_recording():
    """The golden recording of tests/data/golden: what it holds and its size on disk."""
    golden = ROOT / "tests" / "data" / "golden"
    manifest = json.loads((golden / "manifest.json").read_text())
    files = [path for path in golden.rglob("*") if path.is_file()]
    return {"recording": {"golden": {
        "cases": len(manifest["cases"]), "files": len(files),
        "megabytes": rounded(sum(path.stat().st_size for path in files) / 1e6, 3),
        "schema_version": manifest["schema_version"], "refwd": manifest["environment"]["refwd"],
        "torch": manifest["environment"]["torch"].split("+")[0]}}}
