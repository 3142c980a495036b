"""Temp folders of the HTTP service, and the removal of those a killed server left behind.

Each server process keeps its uploads under one parent folder `spoofrl-serve-<pid>-XXXX` in the temp dir
(one subfolder per request, removed when the request ends; the parent is removed at shutdown). The parent
holds a small `owner` file: the pid and the process start time (Linux /proc), so a pid reused by a new
process (a restarted container's server is often pid 1 again) does not keep a dead server's folder alive.

After a SIGKILL nothing runs to clean up, so every start calls `remove_stale_temp_dirs()`: it removes
parent folders of this user whose process is gone (or whose pid now belongs to another process), and
legacy `spoofrl-serve-*` folders (one per request, no pid in the name) of this user older than an hour.
Folders of other users, symlinks and anything of a live server are left alone.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "spoofrl-serve-"
OWNER_FILE = "owner"
LEGACY_MAX_AGE_SECONDS = 3600.0
_PID_FOLDER = re.compile(re.escape(PREFIX) + r"(\d+)-[A-Za-z0-9_]+")

log = logging.getLogger(__name__)


def process_start_time(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, from /proc), or None where unknown."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_line.rsplit(")", 1)[-1].split()  # the command name in (...) may contain spaces
    return fields[19] if len(fields) > 19 else None  # field 22 of the line; fields[0] is field 3


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _owned_dir(path: Path) -> os.stat_result | None:
    """lstat of `path` when it is a real folder (not a symlink) of this user, else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return None
    return st


def _server_gone(folder: Path, pid: int) -> bool:
    if not pid_alive(pid):
        return True
    try:
        recorded = (folder / OWNER_FILE).read_text().split()
    except OSError:
        return False  # no owner file (or being created): judged by the pid alone
    now = process_start_time(pid)
    if len(recorded) != 2 or recorded[0] != str(pid) or recorded[1] == "-" or now is None:
        return False
    return recorded[1] != now  # the pid now belongs to a process started later: the server is gone


def remove_stale_temp_dirs(base: str | Path | None = None, now: float | None = None) -> list[Path]:
    """Remove the leftovers of dead servers in `base` (default: the temp dir); returns what was removed."""
    base = Path(base or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        if not path.name.startswith(PREFIX) or (st := _owned_dir(path)) is None:
            continue
        match = _PID_FOLDER.fullmatch(path.name)
        if match:
            stale = _server_gone(path, int(match.group(1)))
        else:
            stale = now - st.st_mtime > LEGACY_MAX_AGE_SECONDS
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    if removed:
        log.info("removed %d temp folder(s) left by stopped spoofrl servers", len(removed))
    return removed


class ServeTempRoot:
    """This process's parent temp folder, made on first use (and again if something removed it)."""

    def __init__(self, base: str | Path | None = None):
        self.base = Path(base) if base is not None else None
        self._folder: Path | None = None
        self._lock = threading.Lock()

    def folder(self) -> Path:
        with self._lock:
            if self._folder is None or not self._folder.is_dir():
                pid = os.getpid()
                folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{pid}-", dir=self.base))
                (folder / OWNER_FILE).write_text(f"{pid} {process_start_time(pid) or '-'}\n")
                self._folder = folder
            return self._folder

    @contextmanager
    def request_dir(self) -> Iterator[Path]:
        """A fresh subfolder for one request, removed afterwards."""
        try:
            path = Path(tempfile.mkdtemp(prefix="req-", dir=self.folder()))
        except FileNotFoundError:  # the parent vanished between the check and mkdtemp
            with self._lock:
                self._folder = None
            path = Path(tempfile.mkdtemp(prefix="req-", dir=self.folder()))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None
