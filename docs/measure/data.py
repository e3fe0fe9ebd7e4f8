"""The data file docs/data/numbers.json, and the figure spans of the pages rewritten from it."""
import json

import hook_numbers  # docs/hook_numbers.py: the span syntax and the formats

from . import DOCS, ROOT

DATA = DOCS / "data" / "numbers.json"
README = ROOT / "README.md"


def merge(data, measured):
    """Put a group's figures into ``data``: top-level groups replaced, timings replaced entry by entry."""
    for key, value in measured.items():
        if key == "timing":
            data.setdefault("timing", {}).update(value)
        else:
            data[key] = value
    return data


def pages():
    """The files with figure spans: every page of docs/ and README.md."""
    return sorted(DOCS.rglob("*.md")) + [README]


def rewrite_pages(data):
    """Rewrite every span of every page from ``data``; return the pages changed and the (page, line, key) of the
    spans whose key ``data`` lacks (left as they are)."""
    changed, missing = [], []
    for page in pages():
        text, lacking = page.read_text(encoding="utf-8"), []
        try:
            new = hook_numbers.rewrite(text, data, lacking)
        except ValueError as error:
            raise SystemExit(f"{page.relative_to(ROOT)}: {error}")
        missing += [(page.relative_to(ROOT).as_posix(), line, key) for line, key in lacking]
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page.relative_to(ROOT).as_posix())
    return changed, missing


def load():
    return json.loads(DATA.read_text(encoding="utf-8")) if DATA.exists() else {}


def save(data):
    DATA.parent.mkdir(parents=True, exist_ok=True)
    ordered = {key: data[key] for key in sorted(data) if key != "timing"}
    if "timing" in data:
        ordered["timing"] = {key: data["timing"][key] for key in sorted(data["timing"])}
    DATA.write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
