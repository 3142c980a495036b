"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config option, e.g. --set objective.beta=0.04 (repeatable; values are YAML)")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'")


def comma_list(text: str) -> list[str]:
    """argparse type of a NAME[,NAME...] option: the names, at least one."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return items


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
    import sys
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
