"""The measurements behind docs/make_numbers.py: one module per family of figures, the groups, the data file.

The package puts on the import path what the measurements use: the repository root (experiments/), docs/
(hook_numbers, the span syntax and the formats) and tests/ (the tests whose choices the measurements reuse).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
for _path in (ROOT, DOCS, ROOT / "tests"):     # experiments/, hook_numbers, and the tests whose choices are reused
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
