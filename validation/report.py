"""Reports of a ``refwd validate`` run: the environment, the text summary, the JSON report and JUnit XML.

JUnit XML is written with the standard library's ElementTree: the format is a few elements, and the packages that
wrap it (junit-xml, junitparser) would add a dependency for no gain.
"""
import json
import math
import os
import platform
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from . import tolerance
from .cases import OPTIMIZERS
from .compare import jsonable
from .harness import result_to_dict
from .outcomes import Check, Status


def environment():
    """torch, CUDA and device names, for the reports (a GPU report must say what it ran on)."""
    import numpy

    import refwd
    info = {"refwd": refwd.__version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "platform": platform.platform(), "torch": None, "cuda": None, "gpu": None}
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_cuda_build"] = torch.version.cuda   # the CUDA the wheel was built for, used or not
    info["torch_cpu_capability"] = _cpu_capability(torch)
    info["cpu"] = _cpu_model()
    info["machine"] = platform.machine()
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_capability(torch):
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        return None


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def counts(results):
    out = {"run": len(results), "passed": 0, "failed": 0, "errors": 0, "known_defects": 0, "expected_errors": 0,
           "unsupported": 0}
    for r in results:
        if r.status == Status.PASS:
            out["passed"] += 1
            if r.note:
                out["expected_errors"] += 1
        elif r.status == Status.FAIL:
            out["failed"] += 1
        elif r.status == Status.ERROR:
            out["errors"] += 1
        elif r.status == Status.UNSUPPORTED:
            out["unsupported"] += 1
        else:
            out["known_defects"] += 1
    return out


def worst_by_optimizer(results):
    """{optimizer: {check: worst ULPs}} over the passing results (not failures, defects or documented differences)."""
    table = {}
    for r in results:
        if r.status != Status.PASS or r.note:
            continue
        row = table.setdefault(r.case.optimizer, {})
        for check, value in r.worst_by_check().items():
            row[check] = max(row.get(check, 0.0), value)
    return {opt: table[opt] for opt in OPTIMIZERS if opt in table}


def worst_by_optimizer_dtype(results):
    """{(optimizer, dtype): {quantity: worst ULPs}} for the lock-step check: the figures docs/oracle.md quotes."""
    table = {}
    for r in results:
        if r.status != Status.PASS or r.note:
            continue
        row = table.setdefault((r.case.optimizer, r.case.dtype), {})
        for (check, quantity), w in r.worst.items():
            row[(check, quantity)] = max(row.get((check, quantity), 0.0), w.ulps)
    return table


def _fmt(value):
    return "inf" if not math.isfinite(value) else f"{value:.2f}"


def summary_text(results, seconds, env=None, tool="refwd validate"):
    env = env or {}
    c = counts(results)
    budget = tolerance.budget("float64", "param")
    lines = [f"{tool}: torch {env.get('torch')}"
             + (f", CUDA {env['cuda']} on {env['gpu']}" if env.get("gpu") else "")
             + f": {c['run']} cases in {seconds:.1f} s",
             f"  passed {c['passed']}, failed {c['failed']}, errors {c['errors']}, "
             f"known torch defects {c['known_defects']}"
             + (f", unsupported by this torch {c['unsupported']}" if c["unsupported"] else "")]
    table = worst_by_optimizer(results)
    if table:
        lines.append(f"  worst ULPs of the error scale (budget {budget:g}), passing cases:")
        for opt, row in table.items():
            cells = "  ".join(f"{check} {_fmt(row[check])}" for check in Check if check in row)
            lines.append(f"    {opt:<8} {cells}")
    defects = [r for r in results if r.status == Status.KNOWN_DEFECT]
    if defects:
        lines.append("known torch defects (not counted as failures):")
        for r in defects:
            lines.append(f"  {r.case.id}: {r.defect.id}, {r.defect.reference}")
            lines.append(f"      {r.detail}")
    reasons = {}
    for r in results:
        if r.status == Status.UNSUPPORTED:
            reasons.setdefault(r.unsupported, []).append(r.case.id)
    if reasons:
        lines.append(f"unsupported by torch {env.get('torch')} (counted apart, not failures):")
        for reason, ids in reasons.items():
            lines.append(f"  {len(ids)} case{'s' if len(ids) > 1 else ''}: {reason} (e.g. {ids[0]})")
    fallbacks = {}
    for r in results:
        for fallback in r.fallbacks:
            fallbacks[fallback] = fallbacks.get(fallback, 0) + 1
    if fallbacks:
        lines.append("written out with ops this torch has (the same formula):")
        for fallback, count in fallbacks.items():
            lines.append(f"  {count} case{'s' if count > 1 else ''}: {fallback}")
    expected = [r for r in results if r.status == Status.PASS and r.note]
    if expected:
        lines.append("documented torch errors and differences (see docs/oracle.md, findings):" if tool == "refwd validate"
                     else "notes:")
        for r in expected:
            lines.append(f"  {r.case.id}: {r.note}")
    bad = [r for r in results if r.status in (Status.FAIL, Status.ERROR)]
    if bad:
        lines.append("failures:" if any(r.status == Status.FAIL for r in bad) else "errors:")
        for r in bad:
            lines.append(f"  {r.case.id} [{r.status}]: {r.detail}")
            if r.note:
                lines.append(f"      {r.note}")
    lines.append("result: " + ("OK" if not bad else "FAILED"))
    return "\n".join(lines)


def json_report(results, seconds, env=None, tool="refwd validate", extra=None):
    c = counts(results)
    return {**(extra or {}),
        "tool": tool,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": env or environment(),
        "budget_ulps": tolerance.BUDGET,
        "seconds": round(seconds, 3),
        "summary": dict(c, worst_ulps_by_optimizer={
            opt: {str(check): jsonable(v) for check, v in row.items()}
            for opt, row in worst_by_optimizer(results).items()}),
        "cases": [result_to_dict(r) for r in results],
    }


def markdown(results, seconds, env, tool, diagnosis=None):
    """The run as Markdown, for a pull-request comment: the summary, the diagnosis, and a row per case."""
    bad = [r for r in results if not r.ok]
    lines = [f"## {tool}", "", f"**{'OK' if not bad else 'FAILED'}**: " + summary_text(results, seconds, env, tool)
             .splitlines()[1].strip(), ""]
    if diagnosis is not None:
        lines += [f"Diagnosis: {diagnosis}", ""]
    lines += ["| case | status | detail |", "|---|---|---|"]
    lines += [f"| {r.case.id} | {r.status} | {r.detail.replace('|', chr(92) + '|')} |" for r in results]
    return "\n".join(lines) + "\n"


def parent_made(path):
    """``path``, its directory created if missing (as the --against reports' writer does)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def write_text(path, text):
    with open(parent_made(path), "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path, results, seconds, env=None, tool="refwd validate", extra=None):
    with open(parent_made(path), "w", encoding="utf-8") as handle:
        json.dump(json_report(results, seconds, env, tool, extra), handle, indent=1, sort_keys=False)
        handle.write("\n")


def junit_tree(results, seconds, tool="refwd validate"):
    """JUnit XML: one testcase per case; failures and errors as such, known torch defects and cases the installed
    torch cannot run as skipped."""
    c = counts(results)
    suites = ET.Element("testsuites", name=tool, tests=str(c["run"]),
                        failures=str(c["failed"]), errors=str(c["errors"]), time=f"{seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=tool.replace(" ", "."), tests=str(c["run"]),
                          failures=str(c["failed"]), errors=str(c["errors"]),
                          skipped=str(c["known_defects"] + c["unsupported"]),
                          time=f"{seconds:.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"{tool.replace(' ', '.')}.{r.case.optimizer}",
                             name=r.case.id, time=f"{r.seconds:.3f}")
        if r.status == Status.FAIL:
            node = ET.SubElement(case, "failure", message=r.detail, type="mismatch")
            node.text = _failure_text(r)
        elif r.status == Status.ERROR:
            node = ET.SubElement(case, "error", message=(r.error or "").splitlines()[0][:500], type="error")
            node.text = r.error
        elif r.status == Status.KNOWN_DEFECT:
            ET.SubElement(case, "skipped", message=f"known torch defect {r.defect.id}: {r.defect.reference}")
        elif r.status == Status.UNSUPPORTED:
            ET.SubElement(case, "skipped", message=r.detail)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(f"{check} {quantity}: worst {_fmt(w.ulps)} ulp, rel {w.relative_difference:.3g}"
                             for (check, quantity), w in sorted(r.worst.items()))
        if r.note:
            out.text += f"\n{r.note}"
    return ET.ElementTree(suites)


def _failure_text(r):
    f = r.failure
    return (f"{r.case.description}\n{f.describe()}\ncheck={f.check} step={f.step} parameter={f.parameter} "
            f"key={f.key} index={f.index} {f.sides[0]}={f.first!r} {f.sides[1]}={f.second!r} ulps={f.ulps} "
            f"budget={f.budget}")


def write_junit(path, results, seconds, tool="refwd validate"):
    tree = junit_tree(results, seconds, tool)
    ET.indent(tree)
    tree.write(parent_made(path), encoding="utf-8", xml_declaration=True)
