"""Worker processes that end when the process that started them dies.

An idle pool worker waits on its task queue, and it holds both ends of that queue's pipe itself, so when its
parent is killed (kill -9, the OOM killer) it never sees an end of file and waits for ever. Each worker is
armed as it starts: on Linux the kernel kills it when its parent dies (prctl PR_SET_PDEATHSIG); where prctl
is missing a daemon thread polls the parent's pid.

    ProcessPoolExecutor(n, mp_context=get_context("spawn"), **pool_initializer(init, initargs))
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

PR_SET_PDEATHSIG = 1     # <linux/prctl.h>
ORPHAN_EXIT_CODE = 1     # nobody reads it: the parent is gone


def pool_initializer(init: Callable[..., Any] | None = None, initargs: tuple = ()) -> dict[str, Any]:
    """`initializer` and `initargs` for a ProcessPoolExecutor or multiprocessing Pool created by this process:
    each worker is made to die with this process, then runs `init(*initargs)` (a module-level function, so
    that spawned workers can import it).

    On Linux the signal fires when the *thread* that started the worker ends: create and use the pool from
    a thread that outlives it (e.g. the main thread)."""
    return {"initializer": _start_worker, "initargs": (os.getpid(), init, tuple(initargs))}


def _start_worker(parent: int, init: Callable[..., Any] | None, initargs: tuple) -> None:
    die_with_parent(parent)
    if init is not None:
        init(*initargs)


def die_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """End this process when `parent`, the process that started it, dies."""
    if not _kernel_kills_orphan():
        watch_parent(parent, poll_s)
    if os.getppid() != parent:   # it died before we were armed: re-parented already
        os._exit(ORPHAN_EXIT_CODE)


def _kernel_kills_orphan() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent: int, poll_s: float = 1.0) -> threading.Thread:
    """A daemon thread that ends this process once its parent is no longer `parent` (an orphan is re-parented
    to init or a subreaper)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(ORPHAN_EXIT_CODE)   # not sys.exit: that would only end this thread

    thread = threading.Thread(target=watch, name="spoofrl-parent-watchdog", daemon=True)
    thread.start()
    return thread
