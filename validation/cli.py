"""``refwd validate``: run torch's optimizers against refwd over the case matrix and report.

Exit codes: 0 every case passed (known torch defects included), 1 a case failed or errored, 2 a usage error:
an unknown optimizer, impl, dtype, device or case, a filter that selects nothing, torch missing (with the
install hint) or cuda asked for and absent.

The structure leaves room for more options: :func:`build_parser` declares them, :func:`main` validates and
selects, and a run feeds every result to a list of *reporters* (objects with ``start(cases)``,
``result(result)`` and ``finish(results, seconds)``), so a new output (say, recording trajectories) is a new
option plus a new reporter.
"""
import argparse
import sys
import time

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
INSTALL_HINT = "python -m pip install torch"


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _values(items):
    """Repeated flags and comma-separated lists alike: ["adam,sgd", "rmsprop"] → ["adam", "sgd", "rmsprop"]."""
    if not items:
        return None
    return [value.strip() for item in items for value in item.split(",") if value.strip()]


def build_parser():
    parser = _Parser(
        prog="refwd validate",
        description="Check torch's SGD, RMSprop, Adam and AdamW (for-loop, foreach and fused implementations, on "
                    "cpu and cuda) against refwd's reference, step by step. Each case runs three checks: "
                    "lock-step (refwd's rule on torch's params, grads and state gives torch's next ones), "
                    "gradients and loss against torch's autograd, and a free-running trajectory in float64.",
        epilog="Exit codes: 0 all passed (known torch defects included), 1 a case failed or errored, 2 usage "
               "error, torch missing, or cuda asked for and absent. Filters combine with each other and with "
               "--quick; each takes one value, a comma-separated list, or is repeated.")
    select = parser.add_argument_group("selecting cases")
    select.add_argument("--quick", action="store_true",
                        help="a subset that still covers every optimizer, flag and implementation, in float64 and "
                             "float32 (seconds)")
    select.add_argument("--optimizer", action="append", metavar="NAME", help="sgd, rmsprop, adam, adamw")
    select.add_argument("--impl", action="append", metavar="IMPL", help="forloop, foreach, fused")
    select.add_argument("--dtype", action="append", metavar="DTYPE", help="float64, float32, float16, bfloat16")
    select.add_argument("--device", action="append", metavar="DEVICE",
                        help="cpu, cuda (default: cpu, and cuda when torch has a CUDA device)")
    select.add_argument("--case", action="append", metavar="ID", help="a case id (see --list)")
    select.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    output = parser.add_argument_group("output")
    output.add_argument("--json", metavar="PATH", help="write a JSON report")
    output.add_argument("--junit", metavar="PATH", help="write JUnit XML (CI systems display it)")
    output.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    output.add_argument("-v", "--verbose", action="store_true", help="one line per case on stderr")
    # --- recording and comparing torch versions: validation/record.py, docs/upgrades.md
    upgrades = parser.add_argument_group("torch upgrades (docs/upgrades.md)")
    upgrades.add_argument("--record", metavar="DIR",
                          help="also save torch's trajectories of the cases run, with a manifest, into DIR (new)")
    upgrades.add_argument("--against", metavar="DIR",
                          help="replay the recording in DIR under the installed torch: per case bit-identical, "
                               "changed within or beyond tolerance, and the verdict against refwd (Markdown on "
                               "stdout, --json for JSON); the filters select among the recorded cases")
    upgrades.add_argument("--markdown", metavar="PATH", help="with --against: also write the Markdown to PATH")
    return parser


def _select(args, cuda_available):
    from .cases import CASES, select
    devices = _values(args.device)
    if devices is None and not args.case:  # a case named by id brings its own device
        devices = ["cpu", "cuda"] if cuda_available else ["cpu"]
    cases = select(CASES, optimizer=_values(args.optimizer), impl=_values(args.impl), dtype=_values(args.dtype),
                   device=devices, case=_values(args.case), quick=args.quick)
    if "cuda" in (_values(args.device) or []) and not cuda_available:
        raise UsageError("cuda was asked for (--device cuda), but torch.cuda.is_available() is False")
    if args.case and not cuda_available:
        cuda_ids = [case for case in cases if case.device == "cuda"]
        if cuda_ids:
            raise UsageError(f"case {cuda_ids[0].id!r} needs cuda, but torch.cuda.is_available() is False")
    if not cases:
        raise UsageError("no case matches these filters (torch has no fused RMSprop, and the free-running cases "
                         "are float64 for-loop); 'refwd validate --list' shows the cases")
    return cases


class Progress:
    """Progress on stderr: a rewritten line on a terminal, otherwise a line every ~10 % and per failure."""

    def __init__(self, stream, quiet=False, verbose=False):
        self.stream, self.quiet, self.verbose = stream, quiet, verbose
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def start(self, cases):
        self.total, self.done, self.bad = len(cases), 0, 0
        self.every = max(1, self.total // 10)
        self.started = time.perf_counter()

    def result(self, result):
        self.done += 1
        self.bad += result.status in ("fail", "error")
        if self.quiet:
            return
        head = f"[{self.done:>{len(str(self.total))}}/{self.total}]"
        if self.verbose or result.status in ("fail", "error"):
            self._line(f"{head} {result.case.id}: {result.status} ({result.detail})")
        elif self.tty:
            self.stream.write(f"\r{head} {result.case.id} ... {self.bad} failing so far\x1b[K")
            self.stream.flush()
        elif self.done % self.every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self.started
            self._line(f"{head} {elapsed:.1f} s, {self.bad} failing so far")

    def _line(self, text):
        if self.tty:
            text = "\r" + text + "\x1b[K"
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, results, seconds):
        if self.tty and not self.quiet:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run(cases, reporters, *, rules=None):
    """Run ``cases`` in order, feeding each result to the reporters; return (results, seconds)."""
    from .harness import run_case
    for reporter in reporters:
        reporter.start(cases)
    started = time.perf_counter()
    results = []
    for case in cases:
        result = run_case(case, rules=rules)
        results.append(result)
        for reporter in reporters:
            reporter.result(result)
    seconds = time.perf_counter() - started
    for reporter in reporters:
        reporter.finish(results, seconds)
    return results, seconds


def main(argv=None, *, stdout=None, stderr=None):
    """Run ``refwd validate ARGV``; return the exit code (0, 1 or 2)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as error:
        print(f"refwd validate: {error} (see 'refwd validate --help')", file=stderr)
        return EXIT_USAGE
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else EXIT_OK
    try:
        import torch
    except ImportError:
        print(f"refwd validate: torch is not installed; install it with: {INSTALL_HINT}", file=stderr)
        return EXIT_USAGE
    if args.markdown and not args.against or args.against and (args.record or args.junit):
        print("refwd validate: --markdown goes with --against, and --against with neither --record nor --junit",
              file=stderr)
        return EXIT_USAGE
    if args.against:  # torch upgrades: validation/record.py
        from .record import against_main
        return against_main(args, stdout=stdout, stderr=stderr)
    from .cases import UnknownFilterError
    try:
        cases = _select(args, torch.cuda.is_available())
    except (UsageError, UnknownFilterError) as error:
        print(f"refwd validate: {error}", file=stderr)
        return EXIT_USAGE
    if args.list:
        for case in cases:
            print(f"{case.id}  {case.description}", file=stdout)
        return EXIT_OK

    from . import report
    env = report.environment()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tensors are tiny: one thread is faster, and steadier on a busy machine
    reporters = [Progress(stderr, quiet=args.quiet, verbose=args.verbose)]
    if args.record:  # torch upgrades: validation/record.py
        from .record import Recorder, RecordingError
        try:
            reporters.append(Recorder(args.record))
        except RecordingError as error:
            print(f"refwd validate: {error}", file=stderr)
            return EXIT_USAGE
    try:
        results, seconds = run(cases, reporters)
    finally:
        torch.set_num_threads(threads)
    print(report.summary_text(results, seconds, env), file=stdout)
    try:
        if args.json:
            report.write_json(args.json, results, seconds, env)
        if args.junit:
            report.write_junit(args.junit, results, seconds)
    except OSError as error:
        print(f"refwd validate: cannot write the report: {error}", file=stderr)
        return EXIT_USAGE
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
