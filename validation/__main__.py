"""``python -m refwd_validation``: the ``refwd`` command."""
import sys

from .cli import main

sys.exit(main())
