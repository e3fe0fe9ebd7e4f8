"""refwd_validation: the torch side of refwd (installed from the repository's ``validation/`` folder).

``refwd/`` never imports torch; this package does. Entry points:

- :func:`refwd_validation.harness.run_case` runs one :class:`refwd_validation.cases.Case`;
- :data:`refwd_validation.cases.CASES` is the case matrix, :func:`refwd_validation.cases.select` filters it;
- :func:`refwd_validation.cli.main` is the ``refwd`` command (``refwd validate``);
- :mod:`refwd_validation.watch` and :mod:`refwd_validation.interop` check and convert live torch training.

docs/oracle.md describes the checks, the tolerances and the measured figures.
"""
if __name__ == "validation":  # the folder imported under its old, generic name (e.g. from the repository root)
    raise ImportError("refwd's harness is imported as 'refwd_validation' since refwd 0.2.0 (the name 'validation' "
                      "belongs to no one): replace 'import validation' / 'from validation.X import ...' by "
                      "'import refwd_validation' / 'from refwd_validation.X import ...'")
