"""MkDocs hook: every formula rendered to HTML at build time by KaTeX, so the site shows math without JavaScript.

The pages write math as ``$...$`` and ``$$...$$``; ``pymdownx.arithmatex`` (generic mode, mkdocs.yml) finds it and
emits ``<span class="arithmatex">\\(...\\)</span>`` and ``<div class="arithmatex">\\[...\\]</div>``. This hook
replaces the content of each such element with KaTeX's HTML and MathML, computed by the vendored
docs/vendor/katex/katex.min.js running in QuickJS (the ``quickjs`` package), and the pages load only the vendored
katex.min.css and its fonts: no CDN, no script, and the math reads the same offline.

A formula KaTeX cannot parse, or one that is not valid LaTeX (KaTeX's strict mode is "error"), fails the build with
the page's source file, the line of the formula there and KaTeX's message. So does any ``$$``, ``\\(`` or ``\\[``
left in the page's HTML outside code, which a reader would see as raw LaTeX.
"""
import functools
import html
import posixpath
import re
from pathlib import Path

import quickjs
from mkdocs.exceptions import PluginError
from pymdownx import arithmatex

KATEX_JS = Path(__file__).parent / "vendor" / "katex" / "katex.min.js"
KATEX_OPTIONS = "{displayMode: display, throwOnError: true, strict: 'error', output: 'htmlAndMathml'}"

# What arithmatex (generic mode) emits: the wrapper element, then \(...\) inline or \[...\] display.
ARITHMATEX_ELEMENT = re.compile(
    r'(?P<open><(?P<tag>span|div) class="arithmatex">)(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<display>.*?)\\\])'
    r'(?P<close></(?P=tag)>)', re.S)
# The syntax arithmatex reads in the Markdown, taken from the extension itself so that the two cannot drift apart.
SOURCE_BLOCK = re.compile("|".join([arithmatex.RE_DOLLAR_BLOCK, arithmatex.RE_BRACKET_BLOCK, arithmatex.RE_TEX_BLOCK]))
SOURCE_INLINE = re.compile(f"(?:{arithmatex.RE_SMART_DOLLAR_INLINE}|{arithmatex.RE_BRACKET_INLINE})")
# Markdown code, where a dollar is just a dollar: fenced blocks, then inline code spans.
CODE_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,}).*?\n(?:.*\n)*?(?P=indent)?(?P=fence)[ \t]*$", re.M)
CODE_SPAN = re.compile(r"(?<!`)(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)", re.S)
# HTML code, and what a formula would leave behind if arithmatex did not see it.
HTML_CODE = re.compile(r"<(?P<tag>pre|code)\b.*?</(?P=tag)>", re.S)
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[")
TAG = re.compile(r"<[^>]+>")
KATEX_POSITION = re.compile(r" at position (\d+):")


@functools.cache
def katex_renderer():
    """KaTeX's ``renderToString(tex, display)`` as a Python callable. Cached, so KaTeX is parsed once per build
    (``mkdocs serve`` loads this module afresh, and KaTeX with it, when it reloads the config)."""
    context = quickjs.Context()
    context.eval(KATEX_JS.read_text(encoding="utf-8"))
    return context.eval(f"(function(tex, display) {{ return katex.renderToString(tex, {KATEX_OPTIONS}); }})")


@functools.lru_cache(maxsize=4096)
def render(tex, display):
    """KaTeX's HTML for ``tex`` (display or inline); raises ``quickjs.JSException`` when KaTeX rejects it. Cached:
    the same symbols recur across the pages."""
    return katex_renderer()(tex, display)


def katex_message(error):
    """KaTeX's message from a ``JSException``, on one line, without the ``ParseError:`` prefix or JS stack."""
    message = str(error).split("\n    at ")[0].strip()
    message = message.removeprefix("ParseError: ")
    return " ".join(message.split())


def normalised(tex):
    """``tex`` with its whitespace runs made single spaces: a formula nested in a list or admonition loses its
    indentation on its way into the HTML, and the comparison with the source must not care."""
    return " ".join(tex.split())


def blanked(match):
    """The text of ``match`` with all but its newlines made spaces: gone from a search, while the offsets and line
    numbers of the text around it stay true."""
    return re.sub(r"[^\n]", " ", match.group(0))


def without_code(markdown):
    """``markdown`` with its code blocks and code spans blanked out: a dollar or backslash there is no formula."""
    return CODE_SPAN.sub(blanked, CODE_FENCE.sub(blanked, markdown))


def source_formulas(markdown):
    """The formulas in a page's Markdown as ``(display, tex, line)``, in order of position: display ones
    (``$$...$$``, ``\\[...\\]``, ``\\begin{env}...\\end{env}``), then inline ones (``$...$``, ``\\(...\\)``) outside
    them, all outside code. ``line`` is the 1-based line where the formula's TeX starts."""
    text = without_code(markdown)
    found = []

    def take_block(match):
        group = next(name for name in ("math", "math2", "math3") if match.group(name) is not None)
        found.append((match.start(group), True, match.group(group)))
        return blanked(match)

    text = SOURCE_BLOCK.sub(take_block, text)
    for match in SOURCE_INLINE.finditer(text):
        tex_group = 3 if match.group(3) is not None else 6 if match.group(6) is not None else None
        if tex_group is not None:  # otherwise escaped backslashes before a dollar: not a formula
            found.append((match.start(tex_group), False, match.group(tex_group)))
    return [(display, tex, markdown.count("\n", 0, start) + 1) for start, display, tex in sorted(found)]


def formula_line(formulas, display, tex, occurrence, error):
    """The source line of the ``occurrence``-th (0-based) formula ``tex`` of a page, and within it the line KaTeX's
    ``error`` points at if it names a position; None if the page's source has no such formula (a hook put it
    there)."""
    lines = [line for kind, source_tex, line in formulas
             if kind == display and normalised(source_tex) == normalised(tex)]
    if not lines:
        return None
    position = KATEX_POSITION.search(katex_message(error))
    lines_into = tex[:int(position.group(1)) - 1].count("\n") if position else 0
    return lines[min(occurrence, len(lines) - 1)] + lines_into


def source_path(page, config):
    """The page's source file as a path from the directory of mkdocs.yml, as a reader would open it."""
    project = posixpath.dirname(Path(config.config_file_path).resolve().as_posix())
    docs_dir = Path(config.docs_dir).resolve().as_posix()
    return posixpath.join(posixpath.relpath(docs_dir, project), page.file.src_uri)


def render_page(content):
    """``content`` (a page's HTML) with each arithmatex element's TeX replaced by KaTeX's HTML, and the failures as
    ``(display, tex, occurrence, error)``: ``occurrence`` counts the same formula earlier on the page."""
    failures, seen = [], {}

    def replace(match):
        display = match.group("display") is not None
        tex = html.unescape(match.group("display") if display else match.group("inline"))
        occurrence = seen.get((display, tex), 0)
        seen[(display, tex)] = occurrence + 1
        try:
            rendered = render(tex, display)
        except quickjs.JSException as error:
            failures.append((display, tex, occurrence, error))
            return match.group(0)
        return match.group("open") + rendered + match.group("close")

    return ARITHMATEX_ELEMENT.sub(replace, content), failures


def failure_report(path, markdown, failures):
    """One line per formula KaTeX rejected, ``path:line: message``; a formula not in the source file is named by its
    TeX, since some hook inserted it."""
    formulas = source_formulas(markdown)
    lines = []
    for display, tex, occurrence, error in failures:
        line = formula_line(formulas, display, tex, occurrence, error)
        if line is None:
            lines.append(f"{path}: formula inserted by a hook (not in the source file) '{normalised(tex)}': "
                         f"{katex_message(error)}")
        else:
            lines.append(f"{path}:{line}: {katex_message(error)}")
    return "\n".join(lines)


def raw_tex_left(content):
    """The places in a page's HTML, as excerpts of its text, where ``$$``, ``\\(`` or ``\\[`` is left outside the
    formulas and code: math arithmatex did not recognise (a ``$$`` inside a paragraph, say), shown as raw LaTeX."""
    text = html.unescape(TAG.sub("", HTML_CODE.sub("", ARITHMATEX_ELEMENT.sub("", content))))
    return [normalised(text[max(match.start() - 30, 0):match.end() + 30]) for match in RAW_TEX.finditer(text)]


def on_page_content(html_content, page, config, files):
    """The page's HTML with its formulas rendered; a ``PluginError`` naming the source file (and line) instead when a
    formula does not render or raw TeX is left, which fails the build, ``--strict`` or not."""
    rendered, failures = render_page(html_content)
    path = source_path(page, config)
    if failures:
        markdown = Path(page.file.abs_src_path).read_text(encoding="utf-8")
        raise PluginError("KaTeX could not render a formula:\n" + failure_report(path, markdown, failures))
    left = raw_tex_left(html_content)
    if left:
        raise PluginError(f"{path}: raw TeX ($$, \\( or \\[) outside the formulas and code, where a reader would see "
                          "it as is (display math needs $$ on lines of their own, in a paragraph of its own): "
                          + "; ".join(f'"{excerpt}"' for excerpt in left))
    return rendered
