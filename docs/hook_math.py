"""MkDocs hook: formulas rendered at build time (being written)."""
