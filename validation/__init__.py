"""The torch side of refwd: the case matrix, the torch twin, the checks, the tolerances and the reports.

``refwd/`` never imports torch; this package does. Entry points:

- :func:`validation.harness.run_case` runs one :class:`validation.cases.Case` and returns a CaseResult;
- :data:`validation.cases.CASES` is the case matrix, :func:`validation.cases.select` filters it;
- :func:`validation.cli.main` is ``refwd validate``.

docs/oracle.md describes the checks, the tolerances and the measured figures.
"""
