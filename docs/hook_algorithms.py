"""MkDocs hook: a page's algorithm box is the rule's own docstring, so the two cannot drift.

A line that is only ``<!-- algorithm: refwd.optim.adam.adam_step -->`` becomes the ``.. math::`` block of that
function's docstring, as display math (``$$`` and ``\\begin{aligned}`` on lines of their own, the block's lines
as they are, dedented), followed by a line naming the docstring it comes from. The function is imported with
importlib; refwd never imports torch, so the site builds without it. A ``functools.partial`` (``adamw_step``) is
shown as the function it wraps, with its fixed keywords named. A marker naming nothing importable, a function
whose docstring has no ``.. math::`` block, or a line that starts like a marker but is not one fails the build
with the page, the line and the marker. tests/test_algorithm_boxes.py checks the pages and this hook.
"""
import functools
import importlib
import inspect
import re

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"<!-- algorithm: (?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+) -->")
MARKER_START = re.compile(r"<!--\s*algorithm\b")   # anything like a marker, so a misspelt one is not skipped
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).+?\1")                 # a marker quoted in inline code is text, not a marker


class AlgorithmError(LookupError):
    """A marker names no function, or a function without a ``.. math::`` block."""


def resolve(dotted):
    """The object ``dotted`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name or module_name.startswith(f"{error.name}."):
                continue                              # this prefix is not a module: try a shorter one
            raise                                     # the module exists but one of its own imports is missing
        for depth in range(split, len(parts)):
            if not hasattr(target, parts[depth]):
                raise AlgorithmError(f"{'.'.join(parts[:depth])} has no attribute {parts[depth]!r}")
            target = getattr(target, parts[depth])
        return target
    raise AlgorithmError(f"no module in {dotted!r}")


def documented_function(dotted):
    """The function whose docstring holds ``dotted``'s box, its dotted name, and the keywords a partial fixes."""
    function, keywords = resolve(dotted), {}
    while isinstance(function, functools.partial):
        keywords = {**function.keywords, **keywords}
        function = function.func
    if not callable(function):
        raise AlgorithmError(f"{dotted} is not a function")
    return function, f"{function.__module__}.{function.__qualname__}", keywords


def math_lines(docstring):
    """The lines of the first ``.. math::`` block of a docstring, dedented, without surrounding blank lines."""
    lines = (docstring or "").splitlines()
    for number, line in enumerate(lines):
        if line.strip() == ".. math::":
            directive_indent = len(line) - len(line.lstrip())
            block = []
            for body in lines[number + 1:]:
                if body.strip() and len(body) - len(body.lstrip()) <= directive_indent:
                    break                             # back at the directive's indentation: the block ended
                block.append(body)
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            indent = min((len(body) - len(body.lstrip()) for body in block if body.strip()), default=0)
            return [body[indent:].rstrip() for body in block]
    return []


def algorithm_box(dotted):
    """The Markdown that replaces the marker for ``dotted``: the display math and the line naming its source."""
    function, source, keywords = documented_function(dotted)
    lines = math_lines(inspect.getdoc(function))
    if not lines:
        raise AlgorithmError(f"the docstring of {source} has no '.. math::' block")
    origin = f"From the docstring of `{source}`"
    if keywords:
        fixed = ", ".join(f"`{name}={value!r}`" for name, value in keywords.items())
        origin += f"; `{dotted}` is that function with {fixed}"
    return "\n".join(["$$", r"\begin{aligned}", *lines, r"\end{aligned}", "$$", "", f"*{origin}.*"])


def expand(markdown, page_name):
    """``markdown`` with every marker line replaced by its algorithm box; fenced code is left alone."""
    out, fence = [], None
    for number, line in enumerate(markdown.splitlines(), start=1):
        opening = FENCE.match(line)
        if opening and (fence is None or opening.group(1) == fence):
            fence = opening.group(1) if fence is None else None
        if fence is not None or not MARKER_START.search(CODE_SPAN.sub("", line)):
            out.append(line)
            continue
        marker = MARKER.fullmatch(line.strip())
        if marker is None:
            raise PluginError(f"{page_name}, line {number}: {line.strip()!r} is not an algorithm marker; "
                              "write it alone on its line as <!-- algorithm: refwd.optim.module.function -->")
        try:
            box = algorithm_box(marker.group("path"))
        except (AlgorithmError, ImportError) as error:
            raise PluginError(f"{page_name}, line {number}: {line.strip()!r}: {error}") from error
        out.extend(["", box, ""])
    return "\n".join(out) + ("\n" if markdown.endswith("\n") else "")


def on_page_markdown(markdown, page, config=None, files=None):
    return expand(markdown, page.file.src_uri)
