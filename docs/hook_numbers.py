"""MkDocs hook: measured figures taken from docs/data/numbers.json, which ``python docs/make_numbers.py`` writes.

A measured figure in a page (a case count, a worst ULP, a run time, a table of results) sits in a *figure span*:

    the CPU matrix of <!--n:counts.cpu-->911<!--/n--> cases
    worst <!--n:matrix.worst.sgd.lockstep|.2f-->0.98<!--/n--> ULPs

``n:`` is followed by the figure's key, a dotted path into docs/data/numbers.json, and optionally ``|`` and a format
(below). Between the two comments is the figure as the data file gives it, so that the page reads right where it is
not built (GitHub, an editor), where HTML comments are not shown. A figure that is a whole block (a Markdown table,
a code block) is a string value with newlines; its span opens and closes on lines of their own:

    <!--n:matrix.scenario_table-->
    | optimizer | dtype | ... |
    <!--/n-->

On the site every span becomes the data file's value, formatted: the build never shows a typed copy. A key the
data file lacks, or a span that is not closed, fails the build naming the page, line and key. A span whose text is
not the data file's value (the page was edited by hand, or the data regenerated without rewriting the pages) is a
warning, which ``mkdocs build --strict`` turns into a failure; ``python docs/make_numbers.py --pages`` rewrites
every span from the data file, and tests/test_docs_numbers.py checks that they agree.

Formats: a Python format spec applied to the value (``.2f``, ``,.0f``, ``.1%``), to each item of a list (joined
by ", "), or one of

- ``sci``: ``1.1e7`` (one decimal of mantissa, the exponent without sign padding or zeros);
- ``tex``: ``$7.5\\times10^{-9}$`` (the same in math);
- ``sup``: ``7.5·10⁻⁹`` (the same in Unicode);
- ``s2``, ``s3``, ...: that many significant figures, with thousands separators (``13,600``, ``3.1``).

Without a format an int gets thousands separators (``1,902``), a float its shortest form, a string itself.
Spans are replaced before docs/hook_math.py renders math, so a span may hold a ``$...$`` formula.
"""
import json
import logging
import math
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "numbers.json"
OPEN = "<!--n:"
CLOSE = "<!--/n-->"
SPAN = re.compile(r"<!--n:(?P<key>[A-Za-z0-9_.\-]+)(?:\|(?P<spec>[^>|]*))?-->(?P<inner>.*?)<!--/n-->", re.S)
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

log = logging.getLogger("mkdocs.plugins.hook_numbers")


class UnknownFigure(KeyError):
    """A span names a key that docs/data/numbers.json does not have."""


def load(path=DATA):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def lookup(data, key):
    """The value at dotted ``key`` in ``data``; :class:`UnknownFigure` naming the first missing part otherwise."""
    value = data
    for depth, part in enumerate(key.split(".")):
        if not isinstance(value, dict) or part not in value:
            raise UnknownFigure(f"{key!r} (no {'.'.join(key.split('.')[:depth + 1])!r} in {DATA.name})")
        value = value[part]
    return value


def _mantissa_exponent(value):
    exponent = math.floor(math.log10(abs(value))) if value else 0
    mantissa = round(value / 10 ** exponent, 1)
    if abs(mantissa) >= 10:             # 9.96e7 rounds to 10.0e7
        mantissa, exponent = round(mantissa / 10, 1), exponent + 1
    return f"{mantissa:.1f}", exponent


def format_value(value, spec=None):
    """The text a figure shows: ``value`` from the data file with the span's format ``spec`` (see the module doc)."""
    if isinstance(value, list):
        return ", ".join(format_value(item, spec) for item in value)
    if isinstance(value, dict):
        raise TypeError("a figure span must name a value, not a group of them")
    if spec in ("sci", "tex", "sup"):
        mantissa, exponent = _mantissa_exponent(float(value))
        return {"sci": f"{mantissa}e{exponent}", "tex": f"${mantissa}\\times10^{{{exponent}}}$",
                "sup": f"{mantissa}·10{str(exponent).translate(SUPERSCRIPT)}"}[spec]
    if spec and re.fullmatch(r"s[1-9]", spec):
        digits = int(spec[1])
        value = float(f"{float(value):.{digits}g}")
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(value)))) if value else 0
        return f"{value:,.{decimals}f}"
    if spec:
        return format(value, spec)
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return repr(value)


def shown(value, spec=None):
    """What a span holds between its comments: the figure, and for a block (text with newlines) a newline on
    either side, so that the block's comments stand on lines of their own."""
    text = format_value(value, spec)
    return f"\n{text}\n" if "\n" in text else text


def spans(text):
    """Every figure span of ``text``: (key, spec, inner text, match, line number); ValueError for an opening
    comment that no closing one follows, naming its line."""
    found, position = [], 0
    for match in SPAN.finditer(text):
        stray = text.find(OPEN, position, match.start())
        if stray != -1:
            break
        if OPEN in match["inner"]:       # an opening comment without its closing one, then another span
            stray = match.start()
            break
        line = text.count("\n", 0, match.start()) + 1
        found.append((match["key"], match["spec"] or None, match["inner"], match, line))
        position = match.end()
    else:
        stray = text.find(OPEN, position)
    if stray != -1:
        raise ValueError(f"line {text.count(chr(10), 0, stray) + 1}: a figure span {text[stray:stray + 60]!r} "
                         f"is not closed by {CLOSE}")
    return found


def rewrite(text, data, missing=None):
    """``text`` with every span's inner text set to its figure from ``data`` (the comments kept). A key ``data``
    lacks raises :class:`UnknownFigure`, or, given a list ``missing``, is appended to it and its span left as is."""
    pieces, position = [], 0
    for key, spec, inner, match, line in spans(text):
        try:
            figure = shown(lookup(data, key), spec)
        except UnknownFigure:
            if missing is None:
                raise
            missing.append((line, key))
            figure = inner
        pieces += [text[position:match.start()], match.group(0)[:match.start("inner") - match.start()], figure, CLOSE]
        position = match.end()
    return "".join(pieces) + text[position:]


_cache = {}


def _data():
    stamp = DATA.stat().st_mtime_ns
    if _cache.get("stamp") != stamp:
        _cache.update(stamp=stamp, data=load())
    return _cache["data"]


def on_page_markdown(markdown, page, config, files):
    from mkdocs.exceptions import PluginError

    where = page.file.src_uri
    try:
        found = spans(markdown)
    except ValueError as error:
        raise PluginError(f"{where}: {error}") from None
    if not found:
        return markdown
    data = _data()
    pieces, position = [], 0
    for key, spec, inner, match, line in found:
        try:
            value = lookup(data, key)
            text = format_value(value, spec)
        except (UnknownFigure, TypeError, ValueError) as error:
            raise PluginError(f"{where}, line {line}: figure {key!r}: {error}; "
                              "python docs/make_numbers.py writes docs/data/numbers.json") from None
        if inner != shown(value, spec):
            log.warning(f"{where}, line {line}: the page shows {inner.strip()[:60]!r} for {key!r}, the data file "
                        f"{text[:60]!r}; python docs/make_numbers.py --pages rewrites the pages")
        pieces += [markdown[position:match.start()], text]
        position = match.end()
    return "".join(pieces) + markdown[position:]
