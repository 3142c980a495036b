"""The `spoofrl` command. Each subcommand lives in its own module `spoofrl.cli.cmd_<name>` exposing
`register(subparsers)`, which adds its parser and sets `func(args) -> int`. Imports of heavy libraries
happen inside `func`, so `spoofrl --help` stays fast."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# One line per subcommand, in the order `spoofrl --help` lists them.
COMMANDS = [
    "demo", "experiment", "train", "detect", "explain", "calibrate", "serve", "metrics",
    "data", "vocode", "models", "export", "config",
]

EPILOG = ("Scores: higher = more bona fide. A model's raw score is the log-odds of bona fide (natural log); "
          "after `spoofrl calibrate` it is a log-likelihood ratio.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofrl", description="Train, RL-fine-tune (GRPO), evaluate and serve "
                                     "audio deepfake detectors.", epilog=EPILOG)
    from spoofrl import __version__
    parser.add_argument("--version", action="version", version=f"spoofrl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"spoofrl.cli.cmd_{name}").register(sub)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    """`spoofrl data import`, not just `spoofrl data`, in messages."""
    sub = getattr(args, "data_command", None) or getattr(args, "models_command", None)
    return f"spoofrl {args.command}" + (f" {sub}" if sub else "")


def _os_error_message(err: OSError) -> str:
    """`FILE: reason` for a file the user named that cannot be read or written (full disk, no permission, ...)."""
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from spoofrl.log import setup_logging
    setup_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    from spoofrl.errors import SpoofrlError
    name = _command_name(args)
    try:
        return int(args.func(args) or 0)
    except SpoofrlError as err:
        if args.debug:
            raise
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as err:  # reading or writing a path the user gave failed: their setup, not a bug
        if args.debug:
            raise
        print(f"{name}: error: {_os_error_message(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # an unexpected failure: one line, the traceback only with --debug
        if args.debug:
            raise
        print(f"{name}: internal error: {type(err).__name__}: {err} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    from spoofrl.cli.common import show_deprecations_on_one_line
    show_deprecations_on_one_line()
    sys.exit(main())
