"""Logging and progress bars shared by every command."""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")
LOG = logging.getLogger("spoofrl")


class ConsoleHandler(logging.StreamHandler):
    """Writes each record to sys.stderr as it is now, not as it was at set-up: a replaced stderr (pytest's
    capture, a redirect) may have been closed since, which made every later record a 'Logging error'."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass  # always the current sys.stderr


def setup_logging(level: int = logging.INFO, logfile: str | None = None) -> None:
    """Console (stderr) logging, plus an optional file (e.g. a run's train.log). Calling it again (several
    commands in one process) keeps one console handler and applies the new level."""
    root = logging.getLogger("spoofrl")
    root.setLevel(min(level, logging.INFO) if logfile else level)
    console = next((h for h in root.handlers if isinstance(h, ConsoleHandler)), None)
    if console is None:
        console = ConsoleHandler()
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(console)
    console.setLevel(level)
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
