"""Measure every figure the docs quote, write docs/data/numbers.json, and rewrite the figure spans of the pages.

    python docs/make_numbers.py all                 # every group (about 10 min on 2 cores; needs torch)
    python docs/make_numbers.py counts experiments  # some groups (the others keep their figures)
    python docs/make_numbers.py --pages             # only rewrite the pages' spans from the data file
    python docs/make_numbers.py --list              # the groups, what each measures, and how long it takes

A page shows a figure in a span, ``<!--n:matrix.worst.sgd.lockstep|.2f-->0.98<!--/n-->`` (docs/hook_numbers.py):
the key into docs/data/numbers.json, a format, and the figure as the data file gives it. After measuring, this script
rewrites the text of every span of docs/**/*.md and README.md from the data file; on the site docs/hook_numbers.py
puts in the data file's value.

Every figure is measured by the project's own entry points: the case matrix by ``refwd_validation.cases.select``,
the matrix's agreement by a ``refwd validate --json`` run, the mutants by ``refwd_validation.harness.run_case`` on
the cases tests/test_mutants.py picks, the experiments by their ``run()``, the drift reports and the version sweep
from the JSON files the runs wrote, the fuzzer and the watcher's benchmark from their commands' output.

Timings (the keys under ``timing``) carry the machine, its load when the measurement started, and the date; they
are quoted, never compared. Every other figure is deterministic on a given torch and CPU capability, and
tests/test_docs_numbers.py measures the cheap groups again and compares what the pages show.

This file is the command line; docs/measure/ measures, one module per family of figures (its groups.py lists
the groups), and writes the data file and the pages (its data.py).
"""
import argparse
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
if str(DOCS) not in sys.path:      # docs/measure/, the measurements, when this file is run from elsewhere or imported
    sys.path.insert(0, str(DOCS))

from measure import ROOT  # noqa: E402  (docs/measure/: one module per family of figures)
from measure.data import DATA, load, merge, rewrite_pages, save  # noqa: E402
from measure.groups import GROUPS  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"{', '.join(GROUPS)}, or all")
    parser.add_argument("--pages", action="store_true", help="only rewrite the pages' spans from the data file")
    parser.add_argument("--list", action="store_true", help="list the groups")
    parser.add_argument("--repeat", type=int, default=1, help="matrix: run the CPU matrix this many times (timing)")
    args = parser.parse_args(argv)
    if args.list:
        for name, group in GROUPS.items():
            print(f"{name:<13} {group.seconds:>8} s  {group.what}{' (timing)' if group.timing else ''}")
        return 0
    names = list(GROUPS) if "all" in args.groups else args.groups
    unknown = [name for name in names if name not in GROUPS]
    if unknown or not (names or args.pages):
        parser.error(f"unknown group {unknown[0]!r}" if unknown else "name a group, all, or --pages")
    data = load()
    for name in names:
        started = time.perf_counter()
        print(f"{name}: {GROUPS[name].what} ...", file=sys.stderr, flush=True)
        measured = GROUPS[name].measure(args.repeat) if name == "matrix" else GROUPS[name].measure()
        merge(data, measured)
        save(data)
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    changed, missing = rewrite_pages(data)
    print(f"{DATA.relative_to(ROOT)}; pages rewritten: {', '.join(changed) or 'none'}", file=sys.stderr)
    for page, line, key in missing:
        print(f"{page}:{line}: no figure {key!r} in {DATA.name} yet (measure its group)", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
