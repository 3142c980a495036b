"""Logging and progress bars shared by every command."""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")
LOG = logging.getLogger("spoofrl")


def setup_logging(level: int = logging.INFO, logfile: str | None = None) -> None:
    """Console (stderr) logging, plus an optional file (e.g. a run's train.log)."""
    root = logging.getLogger("spoofrl")
    root.setLevel(min(level, logging.INFO) if logfile else level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        console.setLevel(level)
        root.addHandler(console)
    if logfile:
        add_file_handler(logfile)


def add_file_handler(logfile: str) -> logging.Handler:
    handler = logging.FileHandler(logfile)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("spoofrl").addHandler(handler)
    return handler


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it",
             disable: bool | None = None) -> Iterable[T]:
    """A tqdm bar on stderr; SPOOFRL_NO_PROGRESS=1 turns bars off (CI logs stay short)."""
    from tqdm.auto import tqdm
    if disable is None:
        disable = os.environ.get("SPOOFRL_NO_PROGRESS", "") not in ("", "0")
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=False,
                mininterval=0.5 if sys.stderr.isatty() else 10.0, dynamic_ncols=True)
