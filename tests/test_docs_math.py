"""The site's formulas are rendered at build time by KaTeX (docs/hook_math.py), and a bad one fails the build.

- Every formula in the pages' Markdown (outside code, found as docs/hook_math.py finds one to name its line) is
  among the KaTeX formulas of the built page (KaTeX keeps each one's TeX in an annotation); none is left as
  arithmatex's TeX; and no ``$$``, ``\\(`` or ``\\[`` is left in a page's text outside code. The site is built once,
  into a temporary folder.
- A malformed formula fails ``mkdocs build``, with ``--strict`` and without, in a throwaway project that uses the
  hook; the message names the page's source file and the formula's line in it (the line KaTeX points at, inside a
  multi-line formula), or says that a hook inserted the formula. Raw ``$$`` left in a paragraph fails it too.
- The vendored katex.min.css asks only for font files that docs/vendor/katex/fonts has, and every one of them.

The build tests skip where mkdocs, mkdocs-material or quickjs is absent (``pip install -e ".[docs]"``).
"""
import html
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
KATEX = DOCS / "vendor" / "katex"
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
UNRENDERED = re.compile(r'class="arithmatex">\\[(\[]')
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[")
ANNOTATION = re.compile(r'<annotation encoding="application/x-tex">(.*?)</annotation>', re.S)


def needs_mkdocs():
    """Skip unless the docs toolchain (the "docs" extra) is installed."""
    for module in ("mkdocs", "material", "quickjs"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[docs]')")


def hook_math():
    """docs/hook_math.py as a module (it is a file mkdocs loads, not part of a package)."""
    spec = importlib.util.spec_from_file_location("hook_math", DOCS / "hook_math.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mkdocs_build(project, site, strict=True):
    """``mkdocs build`` of the project in ``project`` into ``site``: the finished process, output captured."""
    command = [sys.executable, "-m", "mkdocs", "build", "--site-dir", str(site)] + (["--strict"] if strict else [])
    return subprocess.run(command, cwd=project, capture_output=True, text=True, env=ENV)


def built_page(site, source):
    """The HTML file the site makes of the Markdown file ``source`` (under docs/)."""
    relative = source.relative_to(DOCS).with_suffix("")
    folder = relative.parent if relative.name == "index" else relative
    return site / folder / "index.html"


def article_text(page_html):
    """The text a reader sees in the page's article, code and KaTeX's hidden TeX annotations left out."""
    article = page_html[page_html.index("<article"):page_html.index("</article>")]
    article = re.sub(r"<annotation\b.*?</annotation>|<(pre|code)\b.*?</\1>", "", article, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", article))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The repository's site, built once with ``--strict``."""
    needs_mkdocs()
    site = tmp_path_factory.mktemp("site")
    result = mkdocs_build(ROOT, site)
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def unrendered_formulas(site):
    """The formulas in the pages' Markdown (outside code) missing from the KaTeX formulas of their built page, as
    "path:line: TeX", and the number of formulas in all."""
    hook = hook_math()
    missing, total = [], 0
    for source in sorted(DOCS.rglob("*.md")):
        formulas = hook.source_formulas(source.read_text(encoding="utf-8"))
        if not formulas:
            continue
        total += len(formulas)
        page_html = built_page(site, source).read_text(encoding="utf-8")
        rendered = [hook.normalised(html.unescape(tex)) for tex in ANNOTATION.findall(page_html)]
        for _, tex, line in formulas:
            if hook.normalised(tex) in rendered:
                rendered.remove(hook.normalised(tex))
            else:
                missing.append(f"{source.relative_to(ROOT).as_posix()}:{line}: {hook.normalised(tex)}")
    return missing, total


def test_every_formula_is_rendered(site):
    missing, total = unrendered_formulas(site)
    assert total >= 400, "the pages' math was not found"
    assert not missing, ("formulas in the Markdown that the site does not render (arithmatex did not see them):\n"
                         + "\n".join(missing))
    for built in site.rglob("*.html"):
        page_html = built.read_text(encoding="utf-8")
        assert not UNRENDERED.search(page_html), built
        if "<article" in page_html:
            assert not RAW_TEX.findall(article_text(page_html)), built


def bad_project(tmp_path, markdown, extra_hook=None):
    """A throwaway mkdocs project in ``tmp_path`` using docs/hook_math.py, with one page, docs/index.md."""
    hooks = ([extra_hook] if extra_hook else []) + [(DOCS / "hook_math.py").as_posix()]
    (tmp_path / "mkdocs.yml").write_text(textwrap.dedent("""\
        site_name: bad
        markdown_extensions:
          - pymdownx.arithmatex:
              generic: true
        hooks:
        """) + "".join(f"  - {hook}\n" for hook in hooks))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(markdown)
    return tmp_path


BAD_DISPLAY = """\
# A page

Fine: $x^2$, and `$not math$`.

- A list item:

    $$
    \\begin{aligned}
    a &= b\\\\
    c &= \\frac{1}{2}\\nosuchcommand
    \\end{aligned}
    $$
"""


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "plain"])
def test_a_malformed_formula_fails_the_build_naming_file_and_line(tmp_path, strict):
    needs_mkdocs()
    result = mkdocs_build(bad_project(tmp_path, BAD_DISPLAY), tmp_path / "site", strict=strict)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "docs/index.md:10: KaTeX parse error: Undefined control sequence: \\nosuchcommand" in output, output


def test_an_inline_formula_names_its_own_line(tmp_path):
    needs_mkdocs()
    markdown = "# A page\n\nFine $a$.\n\nThen $\\frac{1}{2$ is not.\n"
    result = mkdocs_build(bad_project(tmp_path, markdown), tmp_path / "site")
    assert "docs/index.md:5: KaTeX parse error:" in result.stdout + result.stderr
    assert result.returncode != 0


def test_a_formula_a_hook_inserted_is_named_as_such(tmp_path):
    needs_mkdocs()
    hook = tmp_path / "insert.py"
    hook.write_text("def on_page_markdown(markdown, **kwargs):\n    return markdown + '\\n\\nAdded $\\\\sqrt{$.\\n'\n")
    result = mkdocs_build(bad_project(tmp_path, "# A page\n\nFine $a$.\n", hook.as_posix()), tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "docs/index.md: formula inserted by a hook (not in the source file) '\\sqrt{': KaTeX parse error" in output


def test_raw_tex_left_in_a_paragraph_fails_the_build(tmp_path):
    needs_mkdocs()
    markdown = "# A page\n\nDisplay math inside a paragraph $$x^2$$ stays raw.\n"
    result = mkdocs_build(bad_project(tmp_path, markdown), tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "docs/index.md: raw TeX" in output and "inside a paragraph $$" in output, output


def test_the_vendored_css_asks_only_for_the_fonts_shipped():
    css = (KATEX / "katex.min.css").read_text(encoding="utf-8")
    asked = set(re.findall(r"url\(([^)]+)\)", css))
    shipped = {path.relative_to(KATEX).as_posix() for path in (KATEX / "fonts").iterdir()}
    assert asked == shipped
    assert len(shipped) == 20 and all(name.endswith(".woff2") for name in shipped)
    assert (KATEX / "LICENSE").is_file()
