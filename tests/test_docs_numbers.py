"""The docs' measured figures come from docs/make_numbers.py, never from a hand: docs/data/numbers.json holds them,
each page shows them in figure spans (docs/hook_numbers.py), and the figures are measured again here.

- Every span names a key of the data file, and shows that key's value as the data file gives it (so a page read on
  GitHub is right too); the hook puts the value in on the site, and fails the build on an unknown key.
- No measured figure is typed outside a span: case counts, tallies, ULPs, times, sizes, percentages and scientific
  figures are searched for in every hand-written page and README.md; each hit outside a span is either listed in
  ``ALLOWED`` with the reason it is not a measurement (a budget, a hyperparameter, a derived value, a historical
  figure of code no longer in the repository), or a failure. An allowed entry that no longer matches fails too.
- The groups are measured again and what every span shows must be what the new measurement shows: the case counts,
  the experiments, the drift reports, the version sweep and the golden recording (no torch, seconds); the mutants
  (torch, about a minute); the CPU matrix (torch, about a minute on 2 cores), where torch and its CPU capability
  are the data file's; the fuzzer's counts for the seeds the page quotes with numbers (torch, about half a minute);
  docs/findings-scalars.md's extreme hyperparameters and torch's square root (torch, about 10 s), where torch and
  its CPU capability are the data file's; tests/test_profiles.py's optax comparisons (optax, seconds; not the
  optax group's `refwd check`, about 30 s), where optax is the data file's.
  The expected figures are the new measurement's, not constants of the code under test.
- Timings (under ``timing``) carry the machine and the date they were measured on, and are never compared.
"""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

import hook_numbers  # noqa: E402  (docs/hook_numbers.py)
from measure.data import load, pages  # noqa: E402  (docs/measure/: what docs/make_numbers.py runs)
from measure.groups import GROUPS  # noqa: E402
from measure.matrix import measure_matrix  # noqa: E402
from measure.mutants import measure_mutants  # noqa: E402
from measure.optax_profiles import measure_profiles  # noqa: E402
from measure.scalars import measure_scalars  # noqa: E402
from measure.timings import FUZZ_RUNS, measure_fuzz  # noqa: E402

DATA = load()
# Pages written by their own generators (each checked by its own test) or by `refwd validate`: no spans there.
GENERATED = {"docs/nonfinite.md", "docs/ecosystem-audit.md", "docs/version-sweep.md"}
PAGES = [page for page in pages() if page.relative_to(ROOT).as_posix() not in GENERATED
         and not page.relative_to(ROOT).as_posix().startswith("docs/reports/")]


def page_name(page):
    return page.relative_to(ROOT).as_posix()


def all_spans():
    return [(page_name(page), line, key, spec, inner) for page in pages()
            for key, spec, inner, _, line in hook_numbers.spans(page.read_text(encoding="utf-8"))]


# ------------------------------------------------------------------------------------------------ spans and the hook


def test_the_data_file_and_the_pages_have_figures():
    assert {"counts", "matrix", "mutants", "experiments", "timing"} <= set(DATA)
    assert len(all_spans()) > 200


@pytest.mark.parametrize("page", pages(), ids=page_name)
def test_every_span_names_a_figure_and_shows_it(page):
    wrong = []
    for key, spec, inner, _, line in hook_numbers.spans(page.read_text(encoding="utf-8")):
        try:
            value = hook_numbers.lookup(DATA, key)
        except hook_numbers.UnknownFigure as error:
            wrong.append(f"{page_name(page)}:{line}: unknown figure {error}")
            continue
        if inner != hook_numbers.shown(value, spec):
            wrong.append(f"{page_name(page)}:{line}: {key} shows {inner.strip()[:50]!r}, the data file "
                         f"{hook_numbers.format_value(value, spec)[:50]!r}")
    assert not wrong, "python docs/make_numbers.py --pages rewrites the spans:\n" + "\n".join(wrong)


class Page:
    class file:
        src_uri = "oracle.md"


def test_the_hook_puts_in_the_figures_and_drops_the_comments():
    data = {"a": {"b": 1902, "c": 0.97996, "d": "| x |\n|---|"}}
    hook_numbers._cache.update(stamp=hook_numbers.DATA.stat().st_mtime_ns, data=data)
    try:
        text = ("of <!--n:a.b-->1,902<!--/n--> cases, worst <!--n:a.c|.2f-->0.98<!--/n-->\n\n"
                "<!--n:a.d-->\n| x |\n|---|\n<!--/n-->\n")
        assert hook_numbers.on_page_markdown(text, Page, None, None) == "of 1,902 cases, worst 0.98\n\n| x |\n|---|\n"
    finally:
        hook_numbers._cache.clear()


def test_an_unknown_figure_fails_the_build_naming_page_line_and_key():
    mkdocs = pytest.importorskip("mkdocs.exceptions")
    with pytest.raises(mkdocs.PluginError, match=r"oracle\.md, line 3: figure 'matrix\.no_such_figure'"):
        hook_numbers.on_page_markdown("a\nb\nthe <!--n:matrix.no_such_figure-->1<!--/n--> cases\n", Page, None, None)
    with pytest.raises(mkdocs.PluginError, match=r"oracle\.md: line 2: .* is not closed"):
        hook_numbers.on_page_markdown("a\n<!--n:counts.cpu-->911 and\nmore <!--n:counts.all-->1,902<!--/n-->", Page,
                                      None, None)


def test_a_span_that_disagrees_with_the_data_is_a_warning(caplog):
    text = "<!--n:counts.cpu-->12<!--/n-->"
    with caplog.at_level("WARNING"):
        assert hook_numbers.on_page_markdown(text, Page, None, None) == f"{DATA['counts']['cpu']:,}"
    assert "make_numbers.py --pages" in caplog.text


def test_formats():
    f = hook_numbers.format_value
    assert [f(1902), f(0.5, ".2f"), f(13604.1, "s3"), f(3.1438, "s2"), f(1.1e7, "sci"), f(7.48e-9, "tex"),
            f(1.3e-7, "sup"), f([48.61, 53.7], ".1f"), f(0.33, ".0%")] == [
        "1,902", "0.50", "13,600", "3.1", "1.1e7", "$7.5\\times10^{-9}$", "1.3·10⁻⁷", "48.6, 53.7", "33%"]


# ------------------------------------------------------------------------------------------ no figure typed by hand

# What a measured figure looks like in prose. Each pattern is searched for in a page's text with its spans removed.
PATTERNS = {
    "count": r"(?<![\w.-])\d[\d,]*(?:\s+|-)(?:cases?|trajectories|configurations|mutants|tests|files)\b",
    "tally": r"(?<![\w.-])\d[\d,]*\s*(?:/|of)\s*\d[\d,]*\b(?![.\d])",
    "ulps": r"(?<![\w.-])\d[\d,.]*(?:e[+-]?\d+)?\s*(?:ULPs?|ulps?)\b",
    "time": r"(?<![\w.-])\d[\d,.]*\s*(?:s|ms|seconds|minutes)\b(?![\w(])",
    "size": r"(?<![\w.-])\d[\d,.]*\s*(?:MB|MiB|GB|GiB|KB|kB)\b",
    "percent": r"(?<![\w.-])\d[\d.]*\s*%",
    "scientific": r"(?<![\w.-])\d\.\d+(?:e[+-]?\d+\b|\s*[·×]\s*10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+|\s*\\times\s*10\^)",
    "relative": r"(?<![\w.-])(?:~\s*)?\d(?:\.\d+)?(?:e-?\d+)?(?:\s*(?:-|to)\s*\d(?:\.\d+)?(?:e-?\d+)?)?\s+relative\b",
    "rate": r"(?<![\w.-])\d[\d,]*\s+(?:configurations\s+)?per minute",
    "worst": r"\bworst\s+(?:[\w-]+\s+){0,3}\d\.\d+",
}

# (page, a snippet of the line the figure is on, containing the figure): why it is not a measured figure, or what
# measures it. Each entry must still match; one that no longer does fails the test, so the list stays true.
PENDING_LEAD = "pending: the lead's page ({}); the figure is docs/data/numbers.json's {}"
ALLOWED = {
    # definitions: budgets, hyperparameters, thresholds a test asserts, parameters of a case or a command
    ("README.md", "a budget of 2 ULPs"): "the budget",
    ("README.md", "random 1 % of each tensor's"): "sample=0.01, a parameter",
    ("docs/oracle.md", "MKL's √ on CPU is within 1 ulp, not ½"): "MKL's documented accuracy",
    ("docs/oracle.md", "gradient at step 2 of 4"): "the cases' definition",
    ("docs/oracle.md", "after step 3 of 6"): "the cases' definition",
    ("docs/oracle.md", "within\n8 KB of step 20"): "the threshold of tests/test_validation_harness.py's memory test",
    ("docs/oracle.md", "would add 32 KB"): "the size of 60 steps' params, computed",
    ("docs/oracle.md", "(1.0133e-6, 27 u away)"): "float16's rounding of 1e-6 (np.float16(1e-6)): the format's",
    ("docs/oracle.md", "3,000·u₃₂ ≈ 1.8·10⁻⁴"): "derived from the formula (1 − 0.999 in float32), not measured",
    ("docs/oracle.md", "NaN params\n   in torch (0/0)"): "an arithmetic fact, 0/0 is NaN",
    ("docs/experiments.md", "the 95 %/5 % quantile ratio exceeds 10"): "a threshold the test asserts",
    ("docs/experiments.md", "is below 1 % for every $v$"): "the threshold the experiment is about",
    ("docs/experiments.md", "is below 1 %:"): "the threshold the experiment is about",
    ("docs/experiments.md", "below 5 % of the initial"): "a threshold the test asserts",
    ("docs/weight-decay.md", "(5 % and 95 % quantiles"): "which quantiles",
    ("docs/interop.md", "# 1 % of each tensor's elements"): "sample=0.01, a parameter",
    ("docs/interop.md", "(p = 1/2048)"): "the sampling table: an error's definition",
    ("docs/interop.md", "| 20 of 1,000 elements"): "the sampling table: an error's definition",
    ("docs/interop.md", "| 1.2·10⁻⁹ |"): "computed from the formula above, not measured (tests/test_watch_sampling.py "
                                       "measures the second row)",
    ("docs/interop.md", "within 1 ULP of any error scale"): "a bound, derived in the sentence",
    ("docs/interop.md", "every key stays below 1 ULP of the error scale"): "the matrix's worst, quoted in "
                                                                            "docs/oracle.md from the data",
    ("docs/interop.md", "within 5 s\n"): "an example message of a 5 s timeout",
    ("docs/interop.md", "in 5000 ms`"): "an example message of a 5 s timeout",
    ("docs/findings-scalars.md", "a product beyond 3.4e38"): "float32's largest value",
    ("docs/findings-scalars.md", "1−α beyond 3.4e38"): "float32's largest value",
    ("docs/findings-scalars.md", "counts 0 ULPs"): "the rule for an infinite error scale",
    # examples of output, and values that differ from run to run
    ("docs/interop.md", "420 ulp (budget 2)"): "an example of a WatchError message (a deliberately wrong step)",
    ("docs/upgrades.md", "whatever was in memory (1.7e10 or"): "uninitialised memory: a different value in every run",
    # historical: measured on code or a matrix that is no longer in the repository, and said to be so
    ("docs/oracle.md", "(10.7 ULPs of the old error scale)"): "historical: the old error model of the shrink",
    ("docs/oracle.md", "(3.3 ULPs of the error scale at β₁ = 0.001"): "historical: refwd before finding 6's fix",
    ("docs/oracle.md", "8.4·10⁷ ULPs of the float64 error scale (a relative 1.3·10⁻⁷ in the param)"):
        "historical: before finding 10's error model",
    ("docs/oracle.md", "float32 cases by up to 4 ULPs"): "historical: before finding 10's error model",
    ("docs/oracle.md", "ran at about\n1,900 per minute"): "historical: the fuzzer before non-finite injections",
    ("docs/upgrades.md", "the 219-case matrix of refwd 0.2.0's first release | 16.6 MB in 43 files, recorded in 28 s"):
        "historical: refwd 0.2.0's first matrix",
    ("docs/upgrades.md", "142 s on the 639-case matrix, 20 s on the 219-case one"): "historical: earlier matrices",
    ("docs/upgrades.md", "39 MB of float64/float32 trajectories, 25.5 MB of distinct"): "historical: refwd 0.2.0's "
                                                                                        "first matrix",
    ("docs/upgrades.md", "chunks, 16.6 MB on disk (deflate on each array alone: 36 MB)"): "historical: as above",
    ("docs/upgrades.md", "(the recording itself is not kept, 16.6\n  MB)"): "historical: a recording not kept",
    ("docs/findings-scalars.md", "| 315,457 ulps of value (131 of scale) |"): "historical: refwd before the lerp fix",
    ("docs/findings-scalars.md", "| 315,457 / 30,484 / 108 |"): "historical: refwd before the lerp fix",
    ("docs/findings-scalars.md", "| ≤ 2 ulps of scale |"): "historical: refwd before the lerp fix",
    ("docs/interop.md", "took 13 to 34 ms a step on the 85 k\nmodel and 1.9 to 4.9 s on the 10 M one (23 to 47 times"):
        "historical: the watcher before issue 13's work, on code no longer in the repository",
    ("docs/conventions.md", "is within 2e-16 relative"): "measured once with Keras 3.15.1 on JAX, which is not "
                                                          "installable where docs/make_numbers.py runs",
    # pending: measured elsewhere, not yet by docs/make_numbers.py
    ("docs/optimizers/adam.md", "at most 2 ULPs of the error scale"): "the budget",
    ("docs/optimizers/rmsprop.md", "at most 2 ULPs of the error scale"): "the budget",
    ("docs/optimizers/sgd.md", "at most 2 ULPs of that error scale"): "the budget",
    ("docs/optimizers/rmspropw.md", "within 1 % of RMSpropW's"): "the threshold of experiment 3",
    ("docs/optimizers/rmspropw.md", "$2.2\\times10^{-16}$ measured"): PENDING_LEAD.format(
        "optimizers/rmspropw.md", "experiments.adamw_as_rmsprop's table (max |ρ − formula|)"),
    ("docs/optimizers/rmspropw.md", "4.4\\times10^{-16}$ in float64"): "γ₃ + γ₁, derived",
    ("docs/optimizers/sgdw.md", "removes 1 % of every weight"): "1e-2 as a fraction: arithmetic",
}


def without_spans(text):
    """``text`` with every span (and its figure) replaced by a marker of the same line count."""
    return hook_numbers.SPAN.sub(lambda match: "§" + "\n" * match.group(0).count("\n"), text)


def hits(page):
    text = without_spans(page.read_text(encoding="utf-8"))
    found = []
    for kind, pattern in PATTERNS.items():
        for match in re.finditer(pattern, text):
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            found.append((kind, match.group(0), text[start:end if end != -1 else len(text)], match.start(), text))
    return found


def allowed(page, figure, position, text):
    for (where, snippet), _ in ALLOWED.items():
        if where != page:
            continue
        at = text.find(snippet)
        while at != -1:
            if at <= position and position + len(figure) <= at + len(snippet):
                return (where, snippet)
            at = text.find(snippet, at + 1)
    return None


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_no_measured_figure_is_typed_outside_a_span(page):
    typed = []
    for kind, figure, line, position, text in hits(page):
        if allowed(page_name(page), figure, position, text) is None:
            typed.append(f"{kind}: {figure!r} in: {line.strip()[:140]}")
    assert not typed, (f"{page_name(page)} types measured figures by hand; put each in a span "
                       "(docs/hook_numbers.py) measured by docs/make_numbers.py, or allow it in ALLOWED with the "
                       "reason it is not a measurement:\n" + "\n".join(typed))


def test_every_allowed_figure_is_still_there():
    used = set()
    for page in PAGES:
        for _, figure, _, position, text in hits(page):
            entry = allowed(page_name(page), figure, position, text)
            if entry is not None:
                used.add(entry)
    stale = [entry for entry in ALLOWED if entry not in used]
    assert not stale, f"ALLOWED entries that match no figure any more (remove them): {stale}"


def test_a_typed_figure_is_caught():
    sample = "the CPU matrix of 911 cases in about 54 s; 51/51 mutants; worst 0.98 ULPs; 24.1 MB; 78 %; 1.1e-15"
    kinds = {kind for kind, pattern in PATTERNS.items() if re.search(pattern, sample)}
    assert {"count", "tally", "ulps", "time", "size", "percent", "scientific"} <= kinds
    assert not any(re.search(pattern, without_spans("<!--n:counts.cpu-->911<!--/n--> cases"))
                   for pattern in PATTERNS.values())


# ------------------------------------------------------------------------------------------------- measured again


def leaves(value, prefix=""):
    """{dotted key: value} for every non-dict value under ``value``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(leaves(item, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}


def assert_pages_show(measured, group):
    """Every span under ``group`` shows what the new measurement shows, and the data file has the same keys."""
    new = {group: measured[group]}
    assert set(leaves(new)) == set(leaves({group: DATA[group]})), (
        f"the {group} group's keys changed; run python docs/make_numbers.py {group}")
    differ = []
    for page, line, key, spec, inner in all_spans():
        if key == group or key.startswith(group + "."):
            now = hook_numbers.shown(hook_numbers.lookup(new, key), spec)
            if now != hook_numbers.shown(hook_numbers.lookup(DATA, key), spec):
                shown, measured = next(((a, b) for a, b in zip(inner.strip().splitlines(), now.strip().splitlines())
                                        if a != b), (inner.strip(), now.strip()))
                differ.append(f"{page}:{line}: {key}: the page shows {shown[:100]!r}, measured now {measured[:100]!r}")
    assert not differ, f"python docs/make_numbers.py {group} measures other figures:\n" + "\n".join(differ)


@pytest.mark.parametrize("group", ["counts", "experiments", "reports", "sweep", "recording"])
def test_the_figures_without_torch_are_measured_again(group):
    assert_pages_show(GROUPS[group].measure(), group)


def needs_the_data_files_torch():
    torch = pytest.importorskip("torch")
    recorded = DATA["matrix"]["environment"]
    here = {"torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if here != recorded:
        pytest.skip(f"the figures were measured with {recorded}, this is {here}: the last bits of torch's "
                    "arithmetic, and so the worst ULPs, are its own")


@pytest.mark.torch
def test_the_mutants_are_measured_again():
    pytest.importorskip("torch")
    assert_pages_show(measure_mutants(), "mutants")


@pytest.mark.torch
def test_the_matrix_is_measured_again():
    needs_the_data_files_torch()
    assert_pages_show(measure_matrix(), "matrix")


@pytest.mark.torch
def test_the_scalars_are_measured_again():
    torch = pytest.importorskip("torch")
    recorded = DATA["scalars"]["environment"]
    here = {"torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if here != recorded:
        pytest.skip(f"docs/findings-scalars.md's ulps were measured with {recorded}, this is {here}")
    assert_pages_show(measure_scalars(), "scalars")     # about 10 s


def test_the_optax_profiles_are_measured_again():
    """tests/test_profiles.py's optax comparisons (seconds); the group's `refwd check` (about 30 s) is not re-run."""
    pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    recorded = DATA["optax"]["environment"]["optax"]
    if optax.__version__ != recorded:
        pytest.skip(f"docs/conventions.md's optax figures were measured with optax {recorded}, this is "
                    f"{optax.__version__}")
    assert_pages_show({"optax": {**DATA["optax"], "profiles": measure_profiles()}}, "optax")


@pytest.mark.torch
def test_the_fuzzers_counts_are_measured_again():
    pytest.importorskip("torch")
    quoted = FUZZ_RUNS[:2]        # the seeds whose counts the page quotes
    measured = measure_fuzz(quoted)
    for key in (f"seed{seed}" for _, seed in quoted):
        assert measured["fuzz"][key] == DATA["fuzz"][key], key


# ------------------------------------------------------------------------------------------------------- timings


def test_timings_carry_their_machine_and_date_and_nothing_else_is_a_timing():
    for name, entry in DATA["timing"].items():
        assert {"machine", "date", "stamp"} <= set(entry), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["date"]), name
        assert {"platform", "cpus", "cpu", "torch", "load_average"} <= set(entry["machine"]), name
    timed = {name for name, group in GROUPS.items() if group.timing}
    assert not timed & set(DATA), f"timing-only groups outside 'timing': {timed & set(DATA)}"
