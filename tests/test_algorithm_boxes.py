"""Each rule's algorithm box is written once, in its docstring; the docs pages show it through a marker.

docs/hook_algorithms.py replaces a line ``<!-- algorithm: refwd.optim.adam.adam_step -->`` of a page by the
``.. math::`` block of that function's docstring. These tests check, without torch:

- every public rule (the ``*_step`` functions of ``refwd.optim``) has a ``.. math::`` block and is named by a
  marker on exactly one page;
- no page types a copy of a box: no ``\\begin{aligned}`` on an optimizer page, and no display formula anywhere
  that shares two distinctive rows with a rule's box (a detector checked here on a re-typed box);
- the notation table, docs/notation.md, is the one list of symbols: every symbol and torch name of each rule
  docstring's "Symbols" line is a row of it, every symbol of each box is in it, every row links exactly the
  rules that use it (none stale), and the optimizer pages point at it instead of typing a symbol map (the
  table, the lines and the TeX are parsed here; the checkers are fed bad inputs to show they report them);
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
import unicodedata
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


# The notation table: docs/notation.md has one row per symbol of the boxes (two where a symbol means two things),
# and the docstrings' Symbols lines and the boxes agree with it. Everything below parses the table, the lines and
# the TeX itself, independently of the hook; each checker returns its findings, so a test can feed it a bad input.

NOTATION = DOCS / "notation.md"
TABLE_HEADER = "| symbol | meaning | torch's name | used by |"
# The lowercase Greek block, α (U+03B1) to ω, under TeX's names; TeX's \epsilon is ϵ, its \varepsilon ε.
GREEK = {name: chr(0x3B1 + offset) for offset, name in enumerate(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho varsigma sigma tau "
    "upsilon phi chi psi omega".split())}
GREEK.update(varepsilon="ε", epsilon="ϵ", vartheta="ϑ", varphi="ϕ", varrho="ϱ")
ACCENTS = {"bar": "\u0304", "hat": "\u0302", "tilde": "\u0303"}
# TeX commands that are operators, spacing or layout, not symbols. A command in neither this set nor GREEK is
# reported, so a new symbol written as a command (\kappa is Greek, \nabla is not) cannot slip through unchecked.
TEX_OPERATORS = {"leftarrow", "rightarrow", "gets", "frac", "tfrac", "sqrt", "max", "min", "ne", "le", "ge",
                 "leq", "geq", "quad", "qquad", "Big", "big", "Bigl", "Bigr", "left", "right", "cdot", "times",
                 "mathrel", "infty", "pm", "mp", "ln", "log", "exp"}
TEXT_GROUP = re.compile(r"\\(?:text|texttt|mathrm|operatorname)\s*\{")
SPACING = re.compile(r"\\\\|\\[,;:! ]|\\(?:begin|end)\{\w+\*?\}")
TEX_TOKEN = re.compile(r"""
    (?:\\(?P<accent>bar|hat|tilde)(?![A-Za-z])\s*)?     # \bar g, \hat\varepsilon
    (?:\\(?P<command>[A-Za-z]+)|(?P<letter>[A-Za-z]))
    (?P<max>\^\{\\max\})?                              # v^{\max}, one symbol
    (?:_(?:\{(?P<braced>[^{}]*)\}|(?P<single>[A-Za-z0-9])))?
""", re.X)
SUBSCRIPT_DIGITS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def without_text(tex):
    r"""``tex`` without its ``\text{...}`` groups (braces balanced, ``\texttt`` nested inside), environments and
    spacing: what is left is symbols and operators."""
    out, start = [], 0
    while (group := TEXT_GROUP.search(tex, start)):
        out.append(tex[start:group.start()])
        depth, end = 1, group.end()
        while depth:
            if end >= len(tex):
                raise ValueError(f"unbalanced braces in {tex!r}")
            if tex[end] == "\\":
                end += 2
                continue
            depth += {"{": 1, "}": -1}.get(tex[end], 0)
            end += 1
        out.append(" ")
        start = end
    out.append(tex[start:])
    return SPACING.sub(" ", "".join(out))


def tex_tokens(tex):
    """(symbol, subscript) for each symbol of ``tex``, the symbol in the docstrings' Unicode (``\\beta`` → β,
    ``\\bar g`` → ḡ, ``v^{\\max}`` → vᵐᵃˣ), the subscript as written ('' if none); an unknown command comes back as
    ``\\name``. Operators are dropped."""
    tokens = []
    for match in TEX_TOKEN.finditer(without_text(tex)):
        command = match["command"]
        if command in TEX_OPERATORS and not match["accent"]:
            continue
        if command is not None and command not in GREEK:
            tokens.append((f"\\{command}", ""))
            continue
        symbol = GREEK[command] if command else match["letter"]
        if match["accent"]:
            symbol += ACCENTS[match["accent"]]
        if match["max"]:
            symbol += "ᵐᵃˣ"
        tokens.append((unicodedata.normalize("NFC", symbol), match["braced"] or match["single"] or ""))
    return tokens


def named(symbol, subscript):
    """The symbol with its subscript as part of its name: β₁, γ₀, η_t."""
    if not subscript:
        return symbol
    return symbol + (subscript.translate(SUBSCRIPT_DIGITS) if subscript.isdigit() else f"_{subscript}")


def box_symbols(lines, table):
    """The symbols a box uses. A subscripted symbol is one of its own where the table has it (β₁, γ₀, η_t), and
    otherwise the symbol at a step (g_t, θ_{t-1}, b_0), whose index letters (t) are symbols too."""
    used = set()
    for symbol, subscript in tex_tokens("\n".join(lines)):
        if subscript and named(symbol, subscript) in table:
            used.add(named(symbol, subscript))
        else:
            used.add(symbol)
            used.update(re.findall(r"[A-Za-z]", subscript))
    return used


def symbol_key(tex):
    """The one symbol a table cell's TeX names, subscript included: ``\\beta_1`` → β₁."""
    tokens = tex_tokens(tex)
    assert len(tokens) == 1, f"the table's symbol ${tex}$ is not one symbol: {tokens}"
    return named(*tokens[0])


def notation_rows(text):
    """(symbol, {names in code font}, {rules linked in "used by"}) for each row of the notation table."""
    lines = text.splitlines()
    assert TABLE_HEADER in lines, f"docs/notation.md has no table headed {TABLE_HEADER!r}"
    rule_of_page = {page: dotted.rpartition(".")[2] for page, dotted in markers()}
    rows = []
    for line in lines[lines.index(TABLE_HEADER) + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, f"a notation row does not have 4 cells: {line}"
        tex = re.fullmatch(r"\$([^$]+)\$", cells[0])
        assert tex, f"the symbol cell {cells[0]!r} is not one $...$ formula"
        rules = set()
        for target in re.findall(r"\]\(([^)\s]+)\)", cells[3]):
            page, _, anchor = target.partition("#")
            assert anchor == "algorithm" and page in rule_of_page, f"{cells[0]}: {target} is not a rule's box"
            rules.add(rule_of_page[page])
        rows.append((symbol_key(tex[1]), set(re.findall(r"`([^`]+)`", cells[2])), rules))
    return rows


def symbols_line(function):
    """The docstring's Symbols line: from "Symbols" to "Conventions" or the end of its paragraph."""
    doc = inspect.getdoc(function)
    start = doc.index("Symbols")
    return doc[start:doc.find("\n\n", start)].split("Conventions")[0]


def symbols_line_pairs(line):
    """(symbol, name) for each symbol a Symbols line defines (name None for one defined by a formula, ``η_t =
    γ/γ₀``), and the items it could not read. ``β₁, β₂ ``betas``'' gives both symbols the name."""
    lead = re.match(r"Symbols(?: as in :\w+:`[^`]+`)?:", line)
    if lead is None:
        return [], [line]
    body = re.sub(r"\([^()]*\)", "", line[lead.end():])     # asides: "(amsgrad)", "(counted, unused ...)"
    pairs, unread, waiting = [], [], []
    for item in re.split(r"[,;]", " ".join(body.split())):
        item = item.strip().rstrip(".").strip()
        pair = re.fullmatch(r"(\S+) (?:``([^`]+)``|(param|grad))", item)
        definition = re.fullmatch(r"(\S+) = \S.*", item)
        if pair:
            name = pair[2] or pair[3]
            pairs += [(symbol, name) for symbol in [*waiting, pair[1]]]
            waiting = []
        elif definition:
            pairs.append((definition[1], None))
        elif re.fullmatch(r"\S+", item):
            waiting.append(item)
        elif item:
            unread.append(item)
    pairs = [(unicodedata.normalize("NFC", symbol), name) for symbol, name in pairs]
    return pairs, unread + waiting


def symbols_line_problems(rule, line, rows):
    """Why ``rule``'s Symbols line disagrees with the table: a symbol it lacks, or a row for the rule with
    another name."""
    pairs, unread = symbols_line_pairs(line)
    problems = [f"{rule}: cannot read {item!r} in its Symbols line" for item in unread]
    for symbol, name in pairs:
        candidates = [row for row in rows if row[0] == symbol]
        if not candidates:
            problems.append(f"{rule}: {symbol} is not in docs/notation.md")
        elif name is not None and not any(name in names and rule in rules for _, names, rules in candidates):
            problems.append(f"{rule}: {symbol} is {name!r} in its docstring, but no row of the table for {symbol} "
                            f"names {name!r} and links {rule}")
    return problems


def rows_problems(rows, uses, names_by_rule):
    """Stale or wrong rows: each symbol's rows must link exactly the rules that use it (``uses``: rule → symbols),
    and a row must name the torch name each linked rule's Symbols line gives (``names_by_rule``: rule →
    {symbol: name})."""
    problems = []
    for symbol in dict.fromkeys(row[0] for row in rows):
        linked = set().union(*(rules for key, _, rules in rows if key == symbol))
        using = {rule for rule, symbols in uses.items() if symbol in symbols}
        if not using:
            problems.append(f"{symbol}: no rule uses it (a stale row)")
        elif linked != using:
            problems.append(f"{symbol}: the table links {sorted(linked)}, the rules using it are {sorted(using)}")
    for symbol, names, rules in rows:
        for rule in sorted(rules):
            name = names_by_rule.get(rule, {}).get(symbol)
            if name is not None and name not in names:
                problems.append(f"{symbol}: the row naming {sorted(names)} links {rule}, whose docstring says {name!r}")
    return problems


@functools.lru_cache(maxsize=None)
def table():
    return notation_rows(NOTATION.read_text())


def rule_uses(name):
    """The symbols rule ``name`` uses: its box's and its Symbols line's; and its Symbols line's names."""
    function = documented(getattr(refwd.optim, name))
    pairs, _ = symbols_line_pairs(symbols_line(function))
    keys = {row[0] for row in table()}
    return (box_symbols(docstring_math(function), keys) | {symbol for symbol, _ in pairs},
            {symbol: code for symbol, code in pairs if code is not None})


def test_the_table_is_read():
    keys = [row[0] for row in table()]
    assert {"θ", "g", "t", "γ", "γ₀", "η_t", "λ", "β₁", "β₂", "ε", "ε̂", "vᵐᵃˣ", "ḡ", "b", "d"} <= set(keys), keys
    assert keys.count("v") == 2 and keys.count("b") == 2, "v and b each mean two things: two rows"
    assert all(rules for _, _, rules in table())


def test_the_tex_reader_finds_symbols_and_skips_text_and_operators():
    assert box_symbols([r"v^{\max}_t &= \max(v^{\max}_{t-1}, v_t) && \text{if amsgrad: replaces } v_t"], {}) == {
        "vᵐᵃˣ", "v", "t"}
    assert box_symbols([r"\bar g_t &= \alpha\, \bar g_{t-1} + \frac{\gamma}{1-\beta_1^t} (\sqrt{v_t} + \hat\varepsilon)"
                        r' && \text{if \texttt{"in\_momentum"}}\\'], {"β₁"}) == {"ḡ", "t", "α", "γ", "β₁", "v", "ε̂"}
    assert box_symbols([r"b_t &\leftarrow \mu\, b_{t-1},\ b_0 = 0 \quad \eta_t\lambda"], {"η_t"}) == {
        "b", "t", "μ", "η_t", "λ"}
    assert box_symbols([r"\kappa_t \leftarrow \nabla \zeta"], {}) == {"κ", "t", "\\nabla", "ζ"}


@pytest.mark.parametrize("name", RULES)
def test_the_docstring_symbols_are_the_tables(name):
    function = documented(getattr(refwd.optim, name))
    line = symbols_line(function)
    pairs, _ = symbols_line_pairs(line)
    assert {"θ", "g", "γ", "λ"} <= {symbol for symbol, _ in pairs}, f"{function.__qualname__}'s Symbols line: {pairs}"
    assert symbols_line_problems(name, line, table()) == []


@pytest.mark.parametrize("name", RULES)
def test_every_symbol_of_a_box_is_in_the_table(name):
    used, _ = rule_uses(name)
    keys = {row[0] for row in table()}
    assert sorted(used - keys) == [], f"the box of {name} uses symbols docs/notation.md does not define"


def test_every_row_is_used_by_the_rules_it_links():
    uses = {name: rule_uses(name) for name in RULES}
    problems = rows_problems(table(), {rule: used for rule, (used, _) in uses.items()},
                             {rule: names for rule, (_, names) in uses.items()})
    assert problems == []


def test_the_checkers_report_a_missing_symbol_a_wrong_name_and_a_stale_row():
    rows = [("θ", {"param"}, {"sgd_step"}), ("γ", {"lr"}, {"sgd_step"}), ("v", {'state["square_avg"]'},
                                                                           {"rmsprop_step", "sgd_step"})]
    line = "Symbols: θ param, γ ``learning_rate``, ζ ``zeta``, β₁, β₂ ``betas``; η_t = γ/γ₀, an aside."
    assert symbols_line_problems("sgd_step", line, rows) == [
        "sgd_step: cannot read 'an aside' in its Symbols line",
        "sgd_step: γ is 'learning_rate' in its docstring, but no row of the table for γ names 'learning_rate' and "
        "links sgd_step",
        "sgd_step: ζ is not in docs/notation.md", "sgd_step: β₁ is not in docs/notation.md",
        "sgd_step: β₂ is not in docs/notation.md", "sgd_step: η_t is not in docs/notation.md"]
    uses = {"sgd_step": {"θ", "γ"}, "rmsprop_step": {"θ", "γ", "v"}}
    names = {"sgd_step": {}, "rmsprop_step": {"v": 'state["square_avg"]'}}
    assert rows_problems(rows + [("ζ", set(), {"sgd_step"})], uses, names) == [
        "θ: the table links ['sgd_step'], the rules using it are ['rmsprop_step', 'sgd_step']",
        "γ: the table links ['sgd_step'], the rules using it are ['rmsprop_step', 'sgd_step']",
        "v: the table links ['rmsprop_step', 'sgd_step'], the rules using it are ['rmsprop_step']",
        "ζ: no rule uses it (a stale row)"]
    names["sgd_step"] = {"v": 'state["exp_avg_sq"]'}
    assert rows_problems(rows, {"sgd_step": {"θ", "γ", "v"}, "rmsprop_step": {"v"}}, names)[-1] == (
        "v: the row naming ['state[\"square_avg\"]'] links sgd_step, whose docstring says 'state[\"exp_avg_sq\"]'")
    keys = {row[0] for row in rows}
    assert box_symbols([r"\theta_t &\leftarrow \theta_{t-1} - \gamma\, \xi_t"], keys) - keys == {"t", "ξ"}


PAGE_SYMBOL_MAP = re.compile(r"\$[^$]+\$\s+(?:`[^`]+`|param\b|grad\b)")


@pytest.mark.parametrize("page", sorted({page for page, _ in markers()}))
def test_each_optimizer_page_points_at_the_table_instead_of_a_symbol_map(page):
    text = (DOCS / page).read_text()
    begin = text.index("Symbols")
    paragraph = text[begin:text.find("\n\n", begin)]
    assert paragraph.startswith("Symbols: see [Notation](../notation.md)"), paragraph
    assert PAGE_SYMBOL_MAP.findall(paragraph) == [], f"{page} types a symbol map again: {paragraph}"


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
