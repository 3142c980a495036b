"""Argument helpers shared by subcommands. Each shared flag is defined once here, so that every command spells
one idea one way; docs/cli.md lists this vocabulary and the deprecated spellings it replaced."""
from __future__ import annotations

import argparse
import sys
import warnings

# Deprecated spellings keep working, with a warning, through the 0.2 releases; this release removes them.
REMOVED_IN = "0.3.0"

DEVICE_HELP = "'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'"


# ------------------------------------------------------------------------------------------------ the vocabulary

def add_format_option(parser: argparse.ArgumentParser, choices: tuple[str, ...], help: str,
                      action: type[argparse.Action] | str = "store") -> argparse.Action:
    """--format: the format of the report the command prints or writes (its first choice is the default)."""
    return parser.add_argument("--format", choices=choices, default=choices[0], action=action, help=help)


def add_output_option(parser: argparse.ArgumentParser, help: str = "write the report to FILE instead of stdout",
                      metavar: str = "FILE") -> argparse.Action:
    """--output/-o: a FILE the command writes (a report, a manifest, a model file)."""
    return parser.add_argument("--output", "-o", metavar=metavar, help=help)


def add_out_dir_option(parser: argparse.ArgumentParser, help: str, required: bool = False) -> argparse.Action:
    """--out: the FOLDER the command writes its results into."""
    return parser.add_argument("--out", metavar="DIR", required=required, help=help)


def add_model_option(parser: argparse.ArgumentParser, help: str) -> argparse.Action:
    """--model: the model folder the command uses (the bundled default when left out)."""
    return parser.add_argument("--model", metavar="RUN_DIR", help=help)


def add_device_option(parser: argparse.ArgumentParser, default: str | None = "auto",
                      help: str = DEVICE_HELP) -> argparse.Action:
    """--device: where torch runs (default None: the config's device)."""
    return parser.add_argument("--device", default=default, help=help)


def add_batch_size_option(parser: argparse.ArgumentParser, default: int, help: str) -> argparse.Action:
    return parser.add_argument("--batch-size", type=int, default=default, metavar="B", help=help)


def add_workers_option(parser: argparse.ArgumentParser, default: int | None, help: str) -> argparse.Action:
    """--workers: parallel processes."""
    return parser.add_argument("--workers", type=int, default=default, metavar="K", help=help)


def add_seed_option(parser: argparse.ArgumentParser, help: str, default: int = 0) -> argparse.Action:
    return parser.add_argument("--seed", type=int, default=default, help=help)


def add_subset_option(parser: argparse.ArgumentParser, help: str,
                      default: list[str] | None = None) -> argparse.Action:
    """--subset NAME[,NAME]: the manifest subsets the command reads (a list in args.subsets)."""
    return parser.add_argument("--subset", dest="subsets", type=comma_list, default=default, metavar="NAME[,NAME]",
                               help=help)


def add_set_option(parser: argparse.ArgumentParser, help: str = "override a config option, e.g. --set "
                   "objective.beta=0.04 (repeatable; values are YAML)") -> argparse.Action:
    """--set KEY=VALUE: config overrides (args.overrides)."""
    return parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                               help=help)


def require(value, spelling: str):
    """`value` of an option argparse cannot mark required (its deprecated alias may fill it instead); its absence
    is a one-line error naming the option, e.g. require(args.output, "--output OUT.onnx")."""
    if value is None:
        from spoofrl.errors import SpoofrlError
        raise SpoofrlError(f"the following option is required: {spelling}")
    return value


def comma_list(text: str) -> list[str]:
    """argparse type of a NAME[,NAME...] option: the names, at least one."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return items


# ------------------------------------------------------------------------------------------------ old spellings

class DeprecatedSpelling(FutureWarning):
    """An old spelling of an option was used. A warning, not a print: the `spoofrl` command shows it as one stderr
    line (show_deprecations_on_one_line), while code calling cli.main (tests, scripts) can record or silence it."""


def warn_deprecated(prog: str, old: str, new: str) -> None:
    warnings.warn(f"{prog}: warning: {old} is deprecated, use {new} ({old} goes away in spoofrl {REMOVED_IN})",
                  DeprecatedSpelling, stacklevel=2)


def show_deprecations_on_one_line() -> None:
    """Print DeprecatedSpelling warnings as their bare message (Python's default adds file:line and the source)."""
    shown_by_python = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecatedSpelling):
            print(message, file=file or sys.stderr)
        else:
            shown_by_python(message, category, filename, lineno, file, line)
    warnings.showwarning = show


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option, kept for one release: it stores into its replacement's dest and warns.

    `replaces`: the replacement's option string (--format); `new_spelling`: what to type instead (--format json).
    Hidden from --help; docs/cli.md lists the old spellings."""

    def __init__(self, option_strings, dest, replaces: str, new_spelling: str, nargs=None, const=None, **kwargs):
        kwargs.setdefault("default", argparse.SUPPRESS)   # the replacement sets the default
        super().__init__(option_strings, dest, nargs=nargs, const=const, help=argparse.SUPPRESS, **kwargs)
        self.replaces = replaces
        self.new_spelling = new_spelling

    def __call__(self, parser, namespace, values, option_string=None):
        warn_deprecated(parser.prog, option_string, self.new_spelling)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def long_option(action: argparse.Action) -> str:
    """The long spelling of an option (--output of --output/-o)."""
    return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, replacement: argparse.Action,
                         const: str | None = None) -> argparse.Action:
    """`old` as a warning alias of the option `replacement`: a flag standing for one of its values when `const`
    is given (--json = --format json), else an option taking the same value (same type, choices, metavar)."""
    new = long_option(replacement)
    if const is not None:
        return parser.add_argument(old, action=DeprecatedAlias, dest=replacement.dest, nargs=0, const=const,
                                   replaces=new, new_spelling=f"{new} {const}")
    return parser.add_argument(old, action=DeprecatedAlias, dest=replacement.dest, replaces=new, new_spelling=new,
                               type=replacement.type, choices=replacement.choices, metavar=replacement.metavar)


# ------------------------------------------------------------------------------------------------ output files

def check_output_file(output: str | None, option: str) -> None:
    """Refuse an unusable output file (a folder, an uncreatable or unwritable place) before any work, so none is
    lost to a typo in the path. None: no file asked for."""
    import os
    from pathlib import Path

    from spoofrl.errors import SpoofrlError
    if output is None:
        return
    path = Path(output)
    if path.is_dir():
        raise SpoofrlError(f"{option} {output}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SpoofrlError(f"{option} {output}: cannot create its folder ({err.strerror or err})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SpoofrlError(f"{option} {output}: not writable")


def write_report(text: str, output: str | None, option: str) -> None:
    """Write a report to stdout (output None) or atomically to a file; if the file cannot be written after all,
    print it, so what was computed is not lost."""
    from pathlib import Path

    from spoofrl.errors import SpoofrlError
    text = text if text.endswith("\n") else text + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    path = Path(output)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)  # never leave a half-written report behind
    except OSError as err:
        sys.stdout.write(text)
        raise SpoofrlError(f"{option} {output}: could not write the report ({err.strerror or err}); "
                           f"it was printed to stdout instead") from None
