"""The built site, opened page by page in a real browser (headless Chromium), works with no network beyond itself.

The site is built once (``mkdocs build --strict``) into a temporary folder and served by ``http.server`` on
127.0.0.1; one Chromium page visits every built page (404.html aside) in turn, with every request for another host
aborted and recorded. On each page:

- no request left 127.0.0.1 (no CDN, no web font service), and no local resource answered with an error
  (a font, the CSS, a figure), nor failed to arrive;
- no ``$$``, ``\\(`` or ``\\[`` is in the text a reader sees (code, and KaTeX's hidden MathML, aside);
- a page whose Markdown has math has KaTeX formulas, every arithmatex element holds one, and KaTeX's fonts loaded;
- every image loaded and decoded (``naturalWidth > 0``).

A full-page screenshot of the Adam page is saved to ``$REFWD_ARTEFACTS`` (or the test's temporary folder) and its
path printed, for a look at the typesetting.

Skips, saying why, where Playwright (``pip install playwright``), a Chromium (Debian: ``apt-get install chromium``;
Playwright's own browser download is not needed), mkdocs, mkdocs-material or quickjs is missing.
"""
import functools
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOST = "127.0.0.1"
SCREENSHOT_PAGE = "optimizers/adam/"

# Run in each page once it has loaded: what the checks need, gathered in the browser.
PAGE_FACTS = """async () => {
    await document.fonts.ready;
    const images = [...document.images];
    await Promise.all(images.map(image => { image.loading = "eager"; return image.decode().catch(() => null); }));
    const hidden = "pre, code, script, style, annotation, .katex-mathml";
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const raw = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent;
        if (/\\$\\$|\\\\\\(|\\\\\\[/.test(text) && !node.parentElement.closest(hidden)) raw.push(text.trim().slice(0, 80));
    }
    return {
        raw,
        katex: document.querySelectorAll(".katex").length,
        arithmatexWithoutKatex: [...document.querySelectorAll(".arithmatex")]
            .filter(element => !element.querySelector(".katex")).map(element => element.textContent.slice(0, 80)),
        katexFontsLoaded: [...document.fonts]
            .filter(font => font.family.replace(/"/g, "").startsWith("KaTeX_") && font.status === "loaded").length,
        brokenImages: images.filter(image => !image.complete || image.naturalWidth === 0).map(image => image.src),
    };
}"""


def sources_with_math():
    """The site paths (``optimizers/adam/``) of the pages whose Markdown has formulas outside code."""
    spec = importlib.util.spec_from_file_location("hook_math", DOCS / "hook_math.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    with_math = set()
    for source in DOCS.rglob("*.md"):
        if hook.source_formulas(source.read_text(encoding="utf-8")):
            relative = source.relative_to(DOCS).with_suffix("")
            folder = relative.parent if relative.name == "index" else relative
            with_math.add("" if folder == Path(".") else folder.as_posix() + "/")
    return with_math


def site_paths(site):
    """The URL paths of the built pages: each HTML file but the 404 page, ``index.html`` as its folder."""
    paths = []
    for page in sorted(site.rglob("*.html")):
        relative = page.relative_to(site).as_posix()
        if relative != "404.html":
            paths.append(relative.removesuffix("index.html"))
    return paths


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site's folder without a log line per request."""

    def log_message(self, format, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    """An HTTP server that lets a browser leave a page mid-download (a broken pipe) without a traceback."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def chromium_path():
    """Chromium's executable, after the Python packages the test needs: skips, saying which is missing (fails
    instead where ``REFWD_REQUIRE_BROWSER`` is set, as CI sets it: there a skip would hide that nothing was checked)."""
    missing = pytest.fail if os.environ.get("REFWD_REQUIRE_BROWSER") else pytest.skip
    for module in ("playwright.sync_api", "mkdocs", "material", "quickjs"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            missing(f"{module} is not installed")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("no chromium on PATH (Debian: apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def site_url(chromium_path, tmp_path_factory):
    """The base URL of the repository's site, built once with ``--strict`` and served on 127.0.0.1."""
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    server = QuietServer((HOST, 0), functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield site, f"http://{HOST}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class Traffic:
    """What a page's requests did that they should not: ``left``, the URLs off the site (each aborted), and
    ``failed``, the site's requests that got an error status or failed on the way."""

    def __init__(self, base):
        self.base, self.left, self.failed = base, [], []

    def leave(self, route):
        """Aborts and records a request off the site."""
        self.left.append(route.request.url)
        route.abort()

    def response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def request_failed(self, request):
        # net::ERR_ABORTED: the page was left before the request ended (the search worker, the favicon), or the
        # request was one ``leave`` aborted; a file missing from the site is answered 404 instead.
        if request.url.startswith(self.base) and request.failure != "net::ERR_ABORTED":
            self.failed.append(f"{request.failure} {request.url}")


@pytest.fixture(scope="module")
def browser_page(chromium_path, site_url):
    """One Chromium page, and the ``Traffic`` that watches its requests: a request off the site (a URL not under
    the served site's) is routed to ``Traffic.leave``, matched in the browser so that the site's own requests do
    not wait on Python."""
    from playwright.sync_api import sync_playwright

    traffic = Traffic(site_url[1])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path)
        page = browser.new_context().new_page()
        page.route(re.compile(f"^(?!{re.escape(traffic.base)})"), traffic.leave)
        page.on("response", traffic.response)
        page.on("requestfailed", traffic.request_failed)
        yield page, traffic
        browser.close()


def page_problems(browser_page, url, has_math):
    """What is wrong with the page at ``url`` as a list of sentences; empty when nothing is."""
    page, traffic = browser_page
    traffic.left.clear()
    traffic.failed.clear()
    page.goto(url, wait_until="load")
    facts = page.evaluate(PAGE_FACTS)
    problems = [f"request left {HOST}: {request}" for request in traffic.left]
    problems += [f"local request failed: {failure}" for failure in traffic.failed]
    problems += [f"raw TeX shown: {text!r}" for text in facts["raw"]]
    problems += [f"formula not rendered: {text!r}" for text in facts["arithmatexWithoutKatex"]]
    problems += [f"image did not load: {image}" for image in facts["brokenImages"]]
    if has_math and not facts["katex"]:
        problems.append("its Markdown has math, the page has no KaTeX formula")
    if has_math and not facts["katexFontsLoaded"]:
        problems.append("no KaTeX font loaded")
    return problems


def test_every_page_renders_offline(site_url, browser_page):
    site, base = site_url
    paths = site_paths(site)
    with_math = sources_with_math()
    assert len(paths) >= 20 and SCREENSHOT_PAGE in paths and with_math <= set(paths)
    problems = {path or "/": page_problems(browser_page, base + path, path in with_math) for path in paths}
    problems = {path: found for path, found in problems.items() if found}
    assert not problems, "\n".join(f"{path}: {sentence}" for path, found in problems.items() for sentence in found)


def test_screenshot_of_the_adam_page(site_url, browser_page, tmp_path, capsys):
    _, base = site_url
    assert not page_problems(browser_page, base + SCREENSHOT_PAGE, has_math=True)
    folder = Path(os.environ.get("REFWD_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "docs-adam.png"
    browser_page[0].screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nscreenshot of the Adam page: {path}")
