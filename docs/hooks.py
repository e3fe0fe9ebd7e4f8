"""MkDocs hook: on the built site, a link from a page to a repository file the site lacks becomes the path in code.

The pages link to source files (``[validation/cases.py](../validation/cases.py)``, ``examples/*.py``) so that they
read well where the repository is browsed (GitHub, an editor). The site contains neither the files outside docs/
nor the Python scripts (excluded in mkdocs.yml), so there such a link would lead nowhere; this hook turns it into
its text, followed by the repository path in code font unless the text already names it. Links between pages, to
figures and to anchors are left alone, and ``mkdocs build --strict`` keeps checking them; tests/test_docs.py checks
that the repository files exist.
"""
import posixpath
import re

LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")  # [text](target), not an image


def repository_path(page_path, target):
    """The repository path a relative link from ``page_path`` (relative to docs/) points at, if the site lacks it:
    a file outside docs/, or a Python script (mkdocs.yml excludes ``*.py`` from the site)."""
    if "://" in target or target.startswith(("#", "/", "mailto:")):
        return None
    path = posixpath.normpath(posixpath.join("docs", posixpath.dirname(page_path), target.split("#")[0]))
    inside = path == "docs" or path.startswith("docs/")
    return path if not inside or path.endswith(".py") else None


def on_page_markdown(markdown, page, config, files):
    def replace(match):
        text, target = match.groups()
        path = repository_path(page.file.src_uri, target)
        if path is None:
            return match.group(0)
        return text if path in text.replace("`", "") else f"{text} (`{path}`)"

    return LINK.sub(replace, markdown)
