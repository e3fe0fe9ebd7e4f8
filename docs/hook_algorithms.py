"""MkDocs hook: algorithm boxes taken from the rules' docstrings (being written)."""
