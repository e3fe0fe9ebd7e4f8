"""The ``refwd`` command: ``refwd --version``, ``refwd validate ...`` (the torch harness, from ``validation``)."""
import argparse
import sys

from . import __version__

EXIT_USAGE = 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="refwd",
        description="refwd: a readable NumPy reference for torch.optim's SGD, RMSprop, Adam and AdamW, "
                    "and a harness that checks torch against it.")
    parser.add_argument("--version", action="version", version=f"refwd {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subcommands.add_parser("validate", add_help=False,
                           help="run torch's optimizers against refwd, step by step (needs torch; see "
                                "'refwd validate --help')")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv[:1])
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE if argv else 0
    if args.command == "validate":
        try:
            from validation.cli import main as validate_main
        except ImportError as error:
            print(f"refwd validate: the validation harness could not be imported: {error}", file=sys.stderr)
            return EXIT_USAGE
        return validate_main(argv[1:] + rest)
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
