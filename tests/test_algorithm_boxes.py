"""Each rule's algorithm box is written once, in its docstring; the docs pages show it through a marker.

docs/hook_algorithms.py replaces a line ``<!-- algorithm: refwd.optim.adam.adam_step -->`` of a page by the
``.. math::`` block of that function's docstring. These tests check, without torch:

- every public rule (the ``*_step`` functions of ``refwd.optim``) has a ``.. math::`` block and is named by a
  marker on exactly one page;
- no page types a copy of a box: no ``\\begin{aligned}`` on an optimizer page, and no display formula anywhere
  that shares two distinctive rows with a rule's box (a detector checked here on a re-typed box);
- the symbol map of each optimizer page's "Symbols" paragraph is the one in its rule's docstring;
- SGDW's and RMSpropW's boxes are SGD's and RMSprop's with the coupled L2 row replaced by Adam's decoupled decay;
- the hook replaces a marker by exactly the docstring's math lines (parsed here independently of the hook), and
  a marker naming nothing, or a function without math, fails with the page, the line and the marker.
"""
import functools
import importlib
import importlib.util
import inspect
import re
import textwrap
import types
from pathlib import Path

import pytest

import refwd.optim
from refwd.optim import adam_step, rmsprop_step, rmspropw_step, sgd_step, sgdw_step

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MARKER = re.compile(r"^<!-- algorithm: (?P<path>[\w.]+) -->$", re.M)
RULES = sorted(name for name in refwd.optim.__all__ if name.endswith("_step"))
NOT_SHOWN = {}   # rule name -> why no page shows it; every rule is shown today


def page_id(page):
    return page.relative_to(DOCS).as_posix()


def documented(rule):
    """The function whose docstring holds ``rule``'s box: ``adamw_step`` is a partial of ``adam_step``."""
    while isinstance(rule, functools.partial):
        rule = rule.func
    return rule


def docstring_math(function):
    """The lines of the ``.. math::`` block of ``function``'s docstring, dedented; [] if it has none."""
    doc = inspect.getdoc(function) + "\n"
    match = re.search(r"^\.\. math::\n\n((?:(?: {4}.*)?\n)+)", doc, re.M)
    return textwrap.dedent(match.group(1)).strip("\n").splitlines() if match else []


def resolve(dotted):
    module, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def markers():
    """(page, dotted path) for every marker in the pages' Markdown."""
    return [(page_id(page), match["path"]) for page in PAGES for match in MARKER.finditer(page.read_text())]


# (1) every rule has a box, and one page shows it.

@pytest.mark.parametrize("name", RULES)
def test_every_rule_has_a_math_block(name):
    function = documented(getattr(refwd.optim, name))
    assert len(docstring_math(function)) >= 3, f"the docstring of {function.__qualname__} has no '.. math::' block"


@pytest.mark.parametrize("name", RULES)
def test_every_rule_is_shown_by_a_marker_on_exactly_one_page(name):
    rule = getattr(refwd.optim, name)
    showing = [page for page, dotted in markers() if resolve(dotted) is rule]
    if name in NOT_SHOWN:
        assert not showing, f"{name} is listed as not shown but {showing} show it"
    else:
        assert len(showing) == 1, f"{name} is shown by a marker on {showing or 'no page'}; one page should show it"


def test_every_marker_names_a_public_rule():
    rules = {id(getattr(refwd.optim, name)) for name in RULES}
    for page, dotted in markers():
        assert id(resolve(dotted)) in rules, f"{page}: the marker names {dotted}, which is not a public rule"


def test_the_hook_is_registered():
    assert "- docs/hook_algorithms.py" in (ROOT / "mkdocs.yml").read_text()


# (2) no page types a copy of a box.

DISPLAY = re.compile(r"^\$\$\n(.*?)\n\$\$$", re.M | re.S)
NOISE = re.compile(r"\\(?:text|texttt|mathrm)\{[^{}]*\}|\\(?:begin|end)\{(?:aligned|cases)\}|\\(?:quad|qquad|Big|big|"
                   r"left|right)\b|\\[,;:! ]|[&\s]")


def box_rows(tex):
    """The distinctive rows of a formula: split at ``\\\\``, annotations after ``&&`` and text, spacing and layout
    dropped, ``\\leftarrow`` read as ``=``; rows of under 12 characters (``t = t+1``) are too common to tell."""
    rows = set()
    for row in tex.split("\\\\"):
        row = NOISE.sub("", row.split("&&")[0]).replace("\\leftarrow", "=")
        if len(row) >= 12:
            rows.add(row)
    return rows


def typed_copies(markdown):
    """(rule, shared rows) for each display formula of ``markdown`` sharing two or more rows with a rule's box."""
    found = []
    for formula in DISPLAY.findall(markdown):
        for name in RULES:
            shared = box_rows(formula) & box_rows("\n".join(docstring_math(documented(getattr(refwd.optim, name)))))
            if len(shared) >= 2:
                found.append((name, sorted(shared)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_page_types_a_copy_of_a_box(page):
    text = page.read_text()
    if page.parent.name == "optimizers":
        assert "\\begin{aligned}" not in text, f"{page_id(page)} types an aligned block: show the box by a marker"
    assert typed_copies(text) == [], f"{page_id(page)} re-types a rule's box; use <!-- algorithm: ... -->"


def test_the_copy_detector_catches_a_retyped_box_and_spares_a_derivation():
    retyped = "\n".join(docstring_math(sgd_step)).replace(r"\leftarrow", "=").replace(r"\,", " ")
    retyped = re.sub(r"&& \\text\{[^}]*\}", r"&& \\text{(as torch does it)}", retyped)
    page = f"Some text.\n\n$$\n\\begin{{aligned}}\n{retyped}\n\\end{{aligned}}\n$$\n"
    assert [name for name, _ in typed_copies(page)] == ["sgd_step", "sgdw_step"]
    derivation = (DOCS / "weight-decay.md").read_text()
    assert DISPLAY.findall(derivation) and typed_copies(derivation) == []


# The pages' symbol maps are the docstrings'.

LATEX_TO_UNICODE = [(r"\varepsilon", "ε"), (r"\theta", "θ"), (r"\gamma", "γ"), (r"\lambda", "λ"), (r"\alpha", "α"),
                    (r"\beta", "β"), (r"\mu", "μ"), (r"\tau", "τ"), (r"\bar g", "ḡ"), (r"^{\max}", "ᵐᵃˣ"),
                    ("_0", "₀"), ("_1", "₁"), ("_2", "₂"), (" ", "")]
PAGE_SYMBOL = re.compile(r"\$([^$]+)\$\s+(?:`([^`]+)`|(param|grad)\b)")
DOC_SYMBOL = re.compile(r"([^\s,()]+(?:, [^\s,()]+)?) (?:``([^`]+)``|(param|grad)\b)")
AS_FOR = re.compile(r"^Symbols as for \[[^\]]+\]\(([\w.-]+)#algorithm\)")


def symbols_paragraph(text, start):
    begin = text.index(start)
    return text[begin:text.find("\n\n", begin)]


def page_symbols(page):
    """{argument or state key: symbol} from the page's "Symbols" paragraph, with the page it refers to."""
    paragraph = symbols_paragraph(page.read_text(), "Symbols")
    inherited = AS_FOR.match(paragraph)
    symbols = page_symbols(page.parent / inherited[1]) if inherited else {}
    for latex, code, word in PAGE_SYMBOL.findall(paragraph):
        for command, character in LATEX_TO_UNICODE:
            latex = latex.replace(command, character)
        symbols[code or word] = latex
    return symbols


def docstring_symbols(function):
    paragraph = symbols_paragraph(inspect.getdoc(function), "Symbols").split("Conventions")[0]
    return {code or word: symbol.replace(" ", "") for symbol, code, word in DOC_SYMBOL.findall(paragraph)}


@pytest.mark.parametrize("page, dotted", [m for m in markers() if m[0].startswith("optimizers/")], ids=str)
def test_the_page_symbols_are_the_docstring_symbols(page, dotted):
    expected = docstring_symbols(documented(resolve(dotted)))
    assert {"param", "grad", "lr"} <= set(expected)
    assert page_symbols(DOCS / page) == expected


# The decoupled variants' boxes are built from the coupled ones.

def test_the_decoupled_variants_boxes_are_the_coupled_boxes_with_the_decay_first():
    adam = docstring_math(adam_step)
    for variant, coupled in [(sgdw_step, sgd_step), (rmspropw_step, rmsprop_step)]:
        lines, coupled_lines = docstring_math(variant), docstring_math(coupled)
        l2 = [line for line in coupled_lines if "(coupled L2)" in line]
        assert len(l2) == 1 and "(coupled L2)" not in "\n".join(lines)
        rest = [line for line in coupled_lines if line not in l2]
        decay = lines[:len(lines) - len(rest)]
        assert lines[len(decay):] == rest, f"{variant.__name__}'s box is not {coupled.__name__}'s after the decay"
        assert decay[:3] == adam[adam.index(decay[0]):][:3], "the decoupled decay is not written as in adam_step"


# (3), (4) the hook.

@pytest.fixture(scope="module")
def hook():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("hook_algorithms", DOCS / "hook_algorithms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_page(hook, markdown, src_uri="optimizers/example.md"):
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_uri=src_uri))
    return hook.on_page_markdown(markdown, page=page, config={}, files=None)


@pytest.mark.parametrize("name", RULES)
def test_the_hook_shows_exactly_the_docstring_math(hook, name):
    rule = getattr(refwd.optim, name)
    dotted = f"refwd.optim.{name.removesuffix('_step')}.{name}"
    markdown = f"# Page\n\nBefore.\n\n<!-- algorithm: {dotted} -->\n\nAfter.\n"
    out = on_page(hook, markdown)
    function = documented(rule)
    box = re.search(r"^\$\$\n\\begin\{aligned\}\n(.*?)\n\\end\{aligned\}\n\$\$$", out, re.M | re.S)
    assert box, out
    assert box[1].splitlines() == docstring_math(function)
    assert out.startswith("# Page\n\nBefore.\n\n") and out.endswith("\n\nAfter.\n")
    assert f"From the docstring of `{function.__module__}.{function.__qualname__}`" in out
    assert "<!-- algorithm" not in out


def test_the_adamw_box_names_the_function_it_comes_from_and_the_fixed_keyword(hook):
    out = on_page(hook, "<!-- algorithm: refwd.optim.adamw.adamw_step -->\n")
    assert ("From the docstring of `refwd.optim.adam.adam_step`; `refwd.optim.adamw.adamw_step` is that function "
            "with `decoupled_weight_decay=True`") in out


def test_a_marker_in_code_is_left_alone(hook):
    markdown = ("Write `<!-- algorithm: refwd.optim.sgd.sgd_step -->` alone on a line:\n\n"
                "```markdown\n<!-- algorithm: refwd.optim.nothing -->\n```\n")
    assert on_page(hook, markdown) == markdown


@pytest.mark.parametrize("marker, reason", [
    ("<!-- algorithm: refwd.optim.adam.adam_stp -->", "has no attribute 'adam_stp'"),
    ("<!-- algorithm: refwd.optim.nomodule.rule -->", "has no attribute 'nomodule'"),
    ("<!-- algorithm: refwdx.optim.rule -->", "no module"),
    ("<!-- algorithm: refwd.optim.decoupled.decay_rate -->", "has no '.. math::' block"),
    ("<!-- algorithm refwd.optim.adam.adam_step -->", "is not an algorithm marker"),
    ("<!--algorithm: refwd.optim.adam.adam_step-->", "is not an algorithm marker"),
    ("Text <!-- algorithm: refwd.optim.adam.adam_step --> in a line", "is not an algorithm marker"),
])
def test_a_bad_marker_fails_the_build_naming_the_page_the_line_and_the_marker(hook, marker, reason):
    from mkdocs.exceptions import PluginError
    with pytest.raises(PluginError) as error:
        on_page(hook, f"# Page\n\nText.\n\n{marker}\n", src_uri="optimizers/broken.md")
    message = str(error.value)
    assert "optimizers/broken.md" in message and "line 5" in message and marker.strip() in message, message
    assert reason in message, message
