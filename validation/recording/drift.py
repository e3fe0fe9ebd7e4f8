"""The drift report of a replay: one verdict sentence (did torch change, and is it still right?), Markdown for a
pull-request comment, and JSON."""
import os

from .. import tolerance
from ..compare import format_ulps
from ..outcomes import Drift, Status
from .replay import COMPARISON_STATUSES, STATUS_WORDS
from .store import SCHEMA_VERSION


def verdict(comparisons):
    """One sentence: did torch change, and is it still right? (And how many cases it could not run.)"""
    unsupported = sum(c.status == Drift.UNSUPPORTED for c in comparisons)
    sentence = _verdict([c for c in comparisons if c.status != Drift.UNSUPPORTED])
    if unsupported:
        sentence += (f" {unsupported} recorded case(s) need what the installed torch does not have and were not "
                     "compared (see below).")
    return sentence


def _verdict(comparisons):
    changed = [c for c in comparisons if c.status not in (Drift.IDENTICAL, Drift.NONDETERMINISTIC, Drift.UNSUPPORTED)]
    wrong = [c for c in comparisons if c.reference is not None and not c.reference.ok]
    irreproducible = sum(c.status == Drift.NONDETERMINISTIC for c in comparisons)
    fixed = [c for c in changed if c.fixed]
    if fixed and all(c.ok for c in comparisons):
        return (f"torch changed and is still correct, and better: {len(fixed)} case(s) that failed the reference "
                f"when recorded now pass it; every other change is within tolerance.")
    if not changed and not wrong and irreproducible:
        return (f"torch's numbers are unchanged: bit-identical to the recording in every reproducible case, and "
                f"correct ({irreproducible} case(s) differ between two runs of the same torch: see below).")
    if not changed and not wrong:
        return "torch's numbers are unchanged: bit-identical to the recording in every case, and correct."
    if not changed:
        return ("torch's numbers are unchanged (bit-identical), but some cases now disagree with the reference: "
                "the reference or its tolerance changed, not torch.")
    if any(c.status in (Drift.BEYOND, Drift.ERROR) for c in changed) or wrong:
        return "torch changed and is now wrong in some cases: see the cases beyond tolerance or failing the reference."
    return "torch changed but is still correct: every change is within tolerance and every case passes the reference."


def markdown(comparisons, recording, current_environment):
    """A Markdown summary for a pull-request comment."""
    recorded_env = recording.environment
    counts = {status: sum(c.status == status for c in comparisons) for status in COMPARISON_STATUSES}
    reference_ok = sum(c.reference is not None and c.reference.ok for c in comparisons)
    lines = [f"## refwd: torch {current_environment.get('torch')} against a recording of torch "
             f"{recorded_env.get('torch')}", "",
             f"**{verdict(comparisons)}**", "",
             "| | recorded | now |", "|---|---|---|"]
    for key, label in (("torch", "torch"), ("torch_cuda_build", "CUDA build"), ("cuda", "CUDA in use"),
                       ("gpu", "GPU"), ("numpy", "NumPy"),
                       ("python", "Python"), ("refwd", "refwd"), ("platform", "platform"), ("cpu", "CPU"),
                       ("torch_cpu_capability", "ATen CPU capability")):
        lines.append(f"| {label} | {recorded_env.get(key) or '–'} | {current_environment.get(key) or '–'} |")
    lines.append(f"| created | {recording.manifest.get('created')} | |")
    lines += ["", "| comparison with the recording | cases |", "|---|---:|"]
    lines += [f"| {STATUS_WORDS[status]} | {counts[status]} |" for status in COMPARISON_STATUSES]
    lines.append(f"| **passing the reference now** (known torch defects included) | {reference_ok} of "
                 f"{len(comparisons)} |")
    not_recorded = recording.manifest.get("unsupported_when_recorded", {})
    if not_recorded:
        first = next(iter(not_recorded.items()))
        lines += ["", f"{len(not_recorded)} case(s) of the matrix are not in the recording: torch "
                      f"{recorded_env.get('torch')} could not run them (e.g. {first[0]}: {first[1]})."]
    worst = max((c.worst_ulps for c in comparisons if c.status == Drift.WITHIN), default=0.0)
    lines += ["", f"Worst change within tolerance: {format_ulps(worst)} ULP of the error scale (budget "
                  f"{tolerance.budget('float64', 'param'):g}). Lock-step replay: each step starts from the recorded "
                  "params, grads and state, so differences never accumulate."]
    changed = [c for c in comparisons
               if c.status != Drift.IDENTICAL or (c.reference is not None and not c.reference.ok)]
    if changed:
        lines += ["", "### Changed or failing cases", "",
                  "| case | vs recording | worst ULP | first difference | reference now |", "|---|---|---:|---|---|"]
        lines += [_markdown_row(c) for c in changed]
    lines += ["", "<details><summary>All cases</summary>", "",
              "| case | vs recording | worst ULP | reference now |", "|---|---|---:|---|"]
    lines += [f"| {c.case.id} | {STATUS_WORDS[c.status]} | {format_ulps(c.worst_ulps)} | {_reference_text(c)} |"
              for c in comparisons]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def _markdown_row(c):
    if c.error:
        first = c.error
    elif c.first_difference is not None:
        first = (c.first_beyond or c.first_difference).describe()
    else:
        first = "–"
    change = STATUS_WORDS[c.status] + (" (a fix: failed the reference when recorded)" if c.fixed else "")
    return (f"| {c.case.id} | {change} | {format_ulps(c.worst_ulps)} | {_cell(first)} | "
            f"{_cell(_reference_text(c))} |")


def _reference_text(c):
    if c.reference is None:
        return "not run"
    if c.reference.status == Status.PASS and not c.reference.note:
        return f"pass ({format_ulps(c.reference.worst_ulps)} ulp)"
    return f"{c.reference.status}: {c.reference.detail}"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def json_report(comparisons, recording, current_environment):
    return {
        "tool": "refwd validate --against", "schema_version": SCHEMA_VERSION,
        "verdict": verdict(comparisons),
        "recording": {"directory": str(recording.directory), "created": recording.manifest.get("created"),
                      "environment": recording.environment},
        "environment": current_environment,
        "counts": {str(status): sum(c.status == status for c in comparisons) for status in COMPARISON_STATUSES},
        "reference_passing": sum(c.reference is not None and c.reference.ok for c in comparisons),
        "not_recorded": recording.manifest.get("unsupported_when_recorded", {}),
        "cases": [c.to_dict() for c in comparisons],
    }




def write_text(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
