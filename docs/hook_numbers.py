"""MkDocs hook: measured figures taken from docs/data (being written)."""
