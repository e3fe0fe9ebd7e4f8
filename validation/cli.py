"""The ``refwd`` command: ``refwd --version``, and ``refwd validate`` (the harness, recording and replay).

``refwd validate`` exit codes: 0 every case passed (known torch defects included), 1 a case failed or errored,
2 a usage error: an unknown optimizer, impl, dtype, device or case, a filter without a value or that selects
nothing, torch missing (with the install hint), cuda asked for and absent, an unusable recording, a report or
recording path that cannot be written (checked before any case runs), 130 interrupted (Ctrl-C: the cases
finished so far are summarised).

Cases run through :mod:`refwd_validation.runner` (a pool of processes, reporters fed in case order).
"""
import argparse
import json
import os
import sys

import refwd

from .runner import Progress, run, start_pool_server

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
INSTALL_HINT = "python -m pip install torch"
SUPPORTED_TORCH = ">=2.4,<3"   # as setup.py's "validate" extra says (tests/test_validation_cli.py checks they agree)


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _values(items, flag=None):
    """Repeated flags and comma-separated lists alike: ["adam,sgd", "rmsprop"] → ["adam", "sgd", "rmsprop"].

    A flag given without a value (``--dtype ""``, ``--dtype ,``) is a usage error naming it and its choices.
    """
    if not items:
        return None
    values = [value.strip() for item in items for value in item.split(",") if value.strip()]
    if any(not item.strip(" ,") for item in items):
        from .cases import DEVICES, DTYPES, IMPLS, OPTIMIZERS
        choices = {"optimizer": OPTIMIZERS, "impl": IMPLS, "dtype": DTYPES, "device": DEVICES}.get(flag)
        hint = f"choose from {', '.join(choices)}" if choices else "'refwd validate --list' shows the case ids"
        raise UsageError(f"--{flag} needs a value; {hint}")
    return values


def _filters(args):
    """The filter flags' values (None where not given), checked for empty values; ``shard`` as (I, N)."""
    filters = {name: _values(getattr(args, name), name) for name in ("optimizer", "impl", "dtype", "device", "case")}
    filters["shard"] = _shard(getattr(args, "shard", None))
    return filters


def _shard(text):
    """``--shard I/N`` as (I, N); a usage error unless 1 <= I <= N."""
    if text is None:
        return None
    index, _, count = text.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit() and 1 <= int(index) <= int(count)):
        raise UsageError(f"--shard takes I/N with whole numbers 1 <= I <= N (e.g. --shard 2/4), got {text!r}")
    return int(index), int(count)


def _check_writable(path):
    """Refuse, before any case runs, a report path that cannot be written: opened for appending (so an existing
    file is not truncated) and removed again if this created it; a missing parent directory must be creatable
    (the report's writer creates it), which is checked on its nearest existing ancestor."""
    import os
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        ancestor = parent
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor) or not os.access(ancestor, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write a report to {path}: {ancestor} is not a writable directory")
        return
    existed = os.path.lexists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise UsageError(f"cannot write a report to {path}: {error.strerror or error}") from None
    if not existed:
        os.remove(path)


def build_parser():
    parser = _Parser(
        prog="refwd",
        description="refwd: a readable NumPy reference for torch.optim's SGD, RMSprop, Adam and AdamW, "
                    "and a harness that checks torch against it.")
    parser.add_argument("--version", action="version", version=f"refwd {refwd.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    validate = commands.add_parser(
        "validate", prog="refwd validate",
        help="run torch's optimizers against refwd, step by step (needs torch; see 'refwd validate --help')",
        description="Check torch's SGD, RMSprop, Adam and AdamW (for-loop, foreach and fused implementations, "
                    "torch.compile, capturable, differentiable, a Tensor lr and GradScaler, on cpu and cuda) "
                    "against refwd's reference, step by step. Each case runs three checks: "
                    "lock-step (refwd's rule on torch's params, grads and state gives torch's next ones), "
                    "gradients and loss against torch's autograd, and a free-running trajectory in float64.",
        epilog="Exit codes: 0 all passed (known torch defects, and cases the installed torch cannot run, "
               "included: both are counted apart), 1 a case failed or errored, 2 usage error, torch missing or "
               "outside the supported versions, or cuda asked for and absent. Filters combine with each other and with "
               "--quick; each takes one value, a comma-separated list, or is repeated.")
    select = validate.add_argument_group("selecting cases")
    select.add_argument("--quick", action="store_true",
                        help="a subset that still covers every optimizer, flag and implementation, in float64 and "
                             "float32 (seconds)")
    select.add_argument("--optimizer", action="append", metavar="NAME", help="sgd, rmsprop, adam, adamw")
    select.add_argument("--impl", action="append", metavar="IMPL",
                        help="torch's kernels forloop, foreach, fused, and its other paths compiled (torch.compile), "
                             "capturable (cuda), differentiable, tensor-lr, grad-scaler (GradScaler, fused)")
    select.add_argument("--dtype", action="append", metavar="DTYPE", help="float64, float32, float16, bfloat16")
    select.add_argument("--device", action="append", metavar="DEVICE",
                        help="cpu, cuda (default: cpu, and cuda when torch has a CUDA device)")
    select.add_argument("--case", action="append", metavar="ID", help="a case id (see --list)")
    select.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    select.add_argument("--shard", metavar="I/N", default=None,
                        help="run shard I of N (1 <= I <= N) of the selected cases, split by a hash of the case id: "
                             "N CI jobs with --shard 1/N ... N/N run every case once (docs/oracle.md)")
    select.add_argument("--jobs", type=int, metavar="N", default=None,
                        help="run the cases in N processes (default: one per CPU core; 1 runs them in this one)")
    output = validate.add_argument_group("output")
    output.add_argument("--json", metavar="PATH", help="write a JSON report")
    output.add_argument("--junit", metavar="PATH", help="write JUnit XML (CI systems display it)")
    output.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    output.add_argument("-v", "--verbose", action="store_true", help="one line per case on stderr")
    upgrades = validate.add_argument_group("torch upgrades (docs/upgrades.md)")
    upgrades.add_argument("--record", metavar="DIR",
                          help="also save torch's trajectories of the cases run, with a manifest, into DIR (new)")
    upgrades.add_argument("--against", metavar="DIR",
                          help="replay the recording in DIR under the installed torch: per case bit-identical, "
                               "changed within or beyond tolerance, and the verdict against refwd (Markdown on "
                               "stdout, --json for JSON); the filters select among the recorded cases")
    upgrades.add_argument("--markdown", metavar="PATH", help="with --against: also write the Markdown to PATH")
    fuzzing = validate.add_argument_group("fuzzing (docs/oracle.md)")
    fuzzing.add_argument("--fuzz", type=int, metavar="N", help="run N random configurations drawn by hypothesis "
                         "(--optimizer, --impl and --dtype narrow the draws); failures are shrunk to a Case(...)")
    fuzzing.add_argument("--seed", type=int, metavar="S", help="with --fuzz: the seed (default: random, printed)")
    _add_check_parser(commands)
    return parser


def _add_check_parser(commands):
    check = commands.add_parser(
        "check", prog="refwd check",
        help="check any optimizer (a torch-style class or factory, or a NumPy function) against one of refwd's "
             "rules (see 'refwd check --help')",
        description="Run the case matrix's scenarios for one of refwd's rules through TARGET (module:attribute: a "
                    "torch.optim.Optimizer subclass from any library, a factory factory(params, **hyperparameters), "
                    "or a function (param, grad, state, **hyperparameters) -> (new_param, new_state) on NumPy "
                    "arrays) and check it lock-step against refwd, with the derived tolerances of "
                    "'refwd validate'. docs/check.md shows examples.",
        epilog="Exit codes: 0 the target agrees, 1 it differs (or fails inside a step), 2 usage error or a target "
               "that cannot be imported or built.")
    check.add_argument("target", metavar="TARGET", help="module:attribute")
    check.add_argument("--as", dest="reference", required=True, metavar="NAME",
                       help="the rule to check against: sgd, rmsprop, adam, adamw, sgdw, rmspropw; NAME:PROFILE with "
                            "a library's conventions (torch, optax, keras, tf1-rmsprop, paper), e.g. rmsprop:optax")
    check.add_argument("--kwargs", metavar="JSON", help="extra keyword arguments for every construction or call")
    check.add_argument("--hyper", action="append", metavar="REFWD=TARGET",
                       help="a renamed hyperparameter (lr=learning_rate; betas=beta1,beta2 splits a pair; "
                            "maximize= drops one the target lacks)")
    check.add_argument("--state", action="append", metavar="REFWD=PATH[:TRANSFORM]",
                       help="where the target keeps a state tensor (exp_avg=m, exp_avg=moments.first, "
                            "momentum_buffer=buf:lr_scaled; transforms lr_scaled, bias_corrected1, bias_corrected2)")
    check.add_argument("--no-diagnosis", action="store_true",
                       help="when the target differs, do not try the named convention profiles (faster)")
    check.add_argument("--params-only", action="store_true",
                       help="compare the params alone (refwd keeps its own state) when the state cannot be mapped")
    check.add_argument("--dtype", action="append", metavar="DTYPE", help="float64, float32, float16, bfloat16")
    check.add_argument("--case", action="append", metavar="ID", help="a case id (see --list)")
    check.add_argument("--quick", action="store_true", help="each scenario once")
    check.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    check.add_argument("--json", metavar="PATH", help="write a JSON report")
    check.add_argument("--junit", metavar="PATH", help="write JUnit XML")
    check.add_argument("--markdown", metavar="PATH", help="write the summary as Markdown (a pull-request comment)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    check.add_argument("-v", "--verbose", action="store_true", help="one line per case on stderr")


def main(argv=None, *, stdout=None, stderr=None):
    """Run ``refwd ARGV``; return the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        command = f"refwd {argv[0]}" if argv[:1] in (["validate"], ["check"]) else "refwd"
        print(f"{command}: {error} (see '{command} --help')", file=stderr)
        return EXIT_USAGE
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(stdout)
        return EXIT_USAGE if argv else EXIT_OK
    if args.command == "check":
        return _check(args, stdout, stderr)
    return _validate(args, stdout, stderr)


def validate(argv, *, stdout=None, stderr=None):
    """Run ``refwd validate ARGV``; return the exit code (0, 1 or 2)."""
    return main(["validate", *argv], stdout=stdout, stderr=stderr)


def _validate(args, stdout, stderr):
    if not (args.list or args.record or args.against or args.fuzz is not None) and (args.jobs or 2) > 1:
        start_pool_server(len(os.sched_getaffinity(0)) if args.jobs is None else args.jobs)
    try:
        import torch
    except ImportError:
        print(f"refwd validate: torch is not installed; install it with: {INSTALL_HINT}", file=stderr)
        return EXIT_USAGE
    unsupported = unsupported_torch(torch.__version__)
    if unsupported:
        print(f"refwd validate: {unsupported}", file=stderr)
        return EXIT_USAGE
    if args.markdown and not args.against or args.against and (args.record or args.junit):
        print("refwd validate: --markdown goes with --against, and --against with neither --record nor --junit",
              file=stderr)
        return EXIT_USAGE
    try:
        filters = _filters(args)
        jobs = _jobs(args.jobs)
        for path in (args.json, args.junit, args.markdown):
            if path and not args.list:
                _check_writable(path)
    except UsageError as error:
        print(f"refwd validate: {error}", file=stderr)
        return EXIT_USAGE
    if args.fuzz is not None or args.seed is not None:
        return _fuzz(args, filters, stderr, stdout)
    if args.against:
        return _against(args, filters, torch, stdout, stderr)
    from .cases import UnknownFilterError
    try:
        cases = _select(filters, args.quick, torch.cuda.is_available())
    except (UsageError, UnknownFilterError) as error:
        print(f"refwd validate: {error}", file=stderr)
        return EXIT_USAGE
    if args.list:
        for case in cases:
            print(f"{case.id}  {case.description}", file=stdout)
        return EXIT_OK

    from . import report
    from .twin import one_thread
    env = report.environment()
    reporters = [Progress(stderr, quiet=args.quiet, verbose=args.verbose)]
    recorder = None
    if args.record:
        from .recording import Recorder, RecordingError
        try:
            recorder = Recorder(args.record)
        except RecordingError as error:
            print(f"refwd validate: {error}", file=stderr)
            return EXIT_USAGE
        reporters.append(recorder)
    jobs = 1 if recorder is not None else jobs
    with one_thread():
        results, seconds, interrupted = run(cases, reporters, recorder=recorder, jobs=jobs)
    print(report.summary_text(results, seconds, env), file=stdout)
    if interrupted:
        print(f"refwd validate: interrupted after {len(results)} of {len(cases)} cases; the summary above is of "
              "those" + ("; no report was written" if args.json or args.junit else "")
              + (f"; {args.record} is incomplete (no manifest)" if args.record else ""), file=stdout)
        return EXIT_INTERRUPTED
    verdict = EXIT_OK if all(result.ok for result in results) else EXIT_FAILED
    for path, write in ((args.json, lambda path: report.write_json(path, results, seconds, env)),
                        (args.junit, lambda path: report.write_junit(path, results, seconds))):
        verdict = _write_report(path, write, verdict, stderr)
    return verdict


def _fuzz(args, filters, stderr, stdout):
    """``refwd validate --fuzz N [--seed S]``: see :func:`refwd_validation.fuzz.fuzz`."""
    others = [flag for flag, given in (("--record", args.record), ("--against", args.against), ("--json", args.json),
              ("--junit", args.junit), ("--list", args.list), ("--quick", args.quick), ("--case", filters["case"]),
              ("--device", filters["device"])) if given]
    if args.fuzz is None or args.fuzz < 1 or others:
        print("refwd validate: --fuzz N (N >= 1) goes with --seed, --optimizer, --impl, --dtype, -q and -v only"
              + (f", not {others[0]}" if others else ""), file=stderr)
        return EXIT_USAGE
    from .cases import UnknownFilterError, select
    try:   # the filters' values checked as the matrix's are
        select(optimizer=filters["optimizer"], impl=filters["impl"], dtype=filters["dtype"])
    except UnknownFilterError as error:
        print(f"refwd validate: {error}", file=stderr)
        return EXIT_USAGE
    from .fuzz import fuzz
    return fuzz(args.fuzz, args.seed, optimizers=filters["optimizer"], dtypes=filters["dtype"], impls=filters["impl"],
                stdout=stdout, stderr=stderr, quiet=args.quiet, verbose=args.verbose)


def _write_report(path, write, verdict, stderr):
    """Write one report (if asked for); a failure names the path and keeps a failing verdict's exit code 1."""
    if not path:
        return verdict
    try:
        write(path)
    except OSError as error:
        print(f"refwd validate: cannot write the report {path}: {error.strerror or error}", file=stderr)
        return EXIT_FAILED if verdict == EXIT_FAILED else EXIT_USAGE
    return verdict


def _select(filters, quick, cuda_available):
    from .cases import CASES, select
    devices = filters["device"]
    if devices is None and not filters["case"]:  # a case named by id brings its own device
        devices = ["cpu", "cuda"] if cuda_available else ["cpu"]
    cases = select(CASES, optimizer=filters["optimizer"], impl=filters["impl"], dtype=filters["dtype"],
                   device=devices, case=filters["case"], quick=quick, shard=filters["shard"])
    if "cuda" in (filters["device"] or []) and not cuda_available:
        raise UsageError("cuda was asked for (--device cuda), but torch.cuda.is_available() is False")
    if filters["case"] and not cuda_available:
        cuda_ids = [case for case in cases if case.device == "cuda"]
        if cuda_ids:
            raise UsageError(f"case {cuda_ids[0].id!r} needs cuda, but torch.cuda.is_available() is False")
    if not cases:
        raise UsageError("no case matches these filters (torch has no fused RMSprop, the free-running cases "
                         "are float64 for-loop, and capturable runs on cuda only); 'refwd validate --list' shows the "
                         "cases")
    return cases


def _check(args, stdout, stderr):
    """``refwd check TARGET --as NAME ...``; returns the exit code (0 agrees, 1 differs, 2 usage)."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:  # the scenarios' torch models and torch-style targets need it
        print(f"refwd check: torch is not installed; install it with: {INSTALL_HINT}", file=stderr)
        return EXIT_USAGE
    import torch
    unsupported = unsupported_torch(torch.__version__)
    if unsupported:
        print(f"refwd check: {unsupported}", file=stderr)
        return EXIT_USAGE
    from . import report
    from .check import check_case, preflight, target_cases
    from .statemap import StateMapError
    from .targets import TargetError
    try:
        target = target_from_arguments(args)
        cases = target_cases(target, dtype=_values(args.dtype, "dtype"), case=_values(args.case, "case"),
                             quick=args.quick)
        if not cases:
            raise UsageError("no case matches these filters; 'refwd check TARGET --as NAME --list' shows them")
        for path in (args.json, args.junit, args.markdown):
            if path and not args.list:
                _check_writable(path)
        if not args.list:
            preflight(target, cases[0])
    except (UsageError, TargetError, StateMapError, ValueError) as error:
        print(f"refwd check: {error}", file=stderr)
        return EXIT_USAGE
    if args.list:
        for case in cases:
            print(f"{case.id}  {case.description}", file=stdout)
        return EXIT_OK
    tool = f"refwd check {target.name} --as {target.reference}"
    from .twin import one_thread
    with one_thread():
        results, seconds, interrupted = run(cases, [Progress(stderr, quiet=args.quiet, verbose=args.verbose)],
                                            run_one=lambda case: check_case(target, case))
    env = report.environment()
    print(report.summary_text(results, seconds, env, tool=tool), file=stdout)
    if target.torch_builtin:
        print(f"note: {target.name} is {target.torch_builtin} itself (re-exported)", file=stdout)
    if target.params_only:
        print("note: params only: the target's state was neither given to refwd nor compared; a state that "
              "differs shows in the params a step later", file=stdout)
    if interrupted:
        print(f"refwd check: interrupted after {len(results)} of {len(cases)} cases", file=stdout)
        return EXIT_INTERRUPTED
    from .diagnose import diagnose
    with one_thread():
        diagnosis = None if args.no_diagnosis else diagnose(target, results, check_case)
    if diagnosis is not None:
        print(f"diagnosis: {diagnosis.describe()}", file=stdout)
    extra = {"target": target.name, "reference": target.reference, "kind": target.kind,
             "diagnosis": diagnosis.to_dict() if diagnosis else None}
    verdict = EXIT_OK if all(result.ok for result in results) else EXIT_FAILED
    text = report.markdown(results, seconds, env, tool, diagnosis.describe() if diagnosis else None)
    for path, write in ((args.json, lambda path: report.write_json(path, results, seconds, env, tool, extra)),
                        (args.junit, lambda path: report.write_junit(path, results, seconds, tool)),
                        (args.markdown, lambda path: report.write_text(path, text))):
        verdict = _write_report(path, write, verdict, stderr)
    return verdict


def target_from_arguments(args):
    """The :class:`refwd_validation.targets.Target` that ``refwd check``'s arguments name (TARGET, --as,
    --kwargs, --hyper, --state, --params-only); a usage error names a bad --kwargs or --hyper."""
    from .targets import make_target
    kwargs = json.loads(args.kwargs) if args.kwargs else {}
    if not isinstance(kwargs, dict):
        raise UsageError(f"--kwargs must be a JSON object, got {args.kwargs}")
    hyper = dict(item.split("=", 1) for item in args.hyper or () if "=" in item)
    if len(hyper) != len(args.hyper or ()):
        raise UsageError(f"--hyper takes REFWD=TARGET, got {args.hyper}")
    return make_target(args.target, args.reference, kwargs=kwargs, hyper=hyper, state_map=args.state,
                       params_only=args.params_only)


def unsupported_torch(version):
    """Why the torch of ``version`` is outside :data:`SUPPORTED_TORCH` (one line naming both), or None."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
    installed = Version(Version(version.split("+")[0]).base_version)
    if installed in SpecifierSet(SUPPORTED_TORCH):
        return None
    return (f"torch {version} is installed, but refwd {refwd.__version__} supports torch{SUPPORTED_TORCH}; install "
            f"a supported one, e.g. python -m pip install 'torch{SUPPORTED_TORCH}'")


def _jobs(requested):
    if requested is not None and requested < 1:
        raise UsageError(f"--jobs must be at least 1, got {requested}")
    return requested or len(os.sched_getaffinity(0))


def _against(args, filters, torch, stdout, stderr):
    """``refwd validate --against DIR [filters] [--json PATH] [--markdown PATH]``; returns the exit code.

    0: every case bit-identical or changed within tolerance, and passing the reference; 1: a case changed
    beyond tolerance, failed to replay, or fails the reference; 2: an unusable recording or selection (found
    while comparing too: a recorded reference verdict that the recorded data contradicts); 130: interrupted.
    """
    from . import recording
    from .cases import UnknownFilterError, select
    from .report import environment
    from .twin import one_thread

    def select_cases(cases):
        return select(cases, optimizer=filters["optimizer"], impl=filters["impl"], dtype=filters["dtype"],
                      case=filters["case"], quick=args.quick, shard=filters["shard"])

    try:
        loaded = recording.load(args.against)
        ids = recording.cases_to_compare(loaded, select_cases, filters["device"])
        if "cuda" in {loaded.cases[case_id].case.device for case_id in ids} and not torch.cuda.is_available():
            raise recording.RecordingError(f"{args.against} has cuda cases, but torch.cuda.is_available() is "
                                           "False here; select --device cpu")
    except (recording.RecordingError, UnknownFilterError) as error:
        print(f"refwd validate: {error}", file=stderr)
        return EXIT_USAGE
    if args.list:
        for case_id in ids:
            print(case_id, file=stdout)
        return EXIT_OK
    progress = Progress(stderr, quiet=args.quiet, verbose=args.verbose)
    progress.start(ids)
    comparisons, interrupted = [], False
    try:
        with one_thread():
            for comparison in recording.compare(loaded, ids, progress=lambda c: progress.result(c.reference)):
                comparisons.append(comparison)
    except recording.RecordingError as error:
        progress.interrupted()
        print(f"refwd validate: {error}", file=stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        progress.interrupted()
        interrupted = True
    else:
        progress.finish(comparisons, 0.0)
    env = environment()
    text = recording.markdown(comparisons, loaded, env)
    print(text, file=stdout)
    if interrupted:
        print(f"refwd validate: interrupted after {len(comparisons)} of {len(ids)} cases; the report above is of "
              "those" + ("; no report file was written" if args.json or args.markdown else ""), file=stdout)
        return EXIT_INTERRUPTED
    verdict = EXIT_OK if all(c.ok for c in comparisons) else EXIT_FAILED
    for path, write in ((args.markdown, lambda path: recording.write_text(path, text)),
                        (args.json, lambda path: recording.write_text(path, json.dumps(
                            recording.json_report(comparisons, loaded, env), indent=1) + "\n"))):
        verdict = _write_report(path, write, verdict, stderr)
    return verdict


if __name__ == "__main__":
    sys.exit(main())
