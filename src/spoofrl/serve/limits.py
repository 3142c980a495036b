"""Request limits: body size and body read timeout (plain ASGI middleware), and the gate that bounds how
many analyses run (and wait) at once.

The body guard checks Content-Length up front and also counts the bytes actually received, so a chunked
upload without a length header is cut off as soon as it passes the limit instead of being spooled to disk
whole. While the body is incomplete, each read waits at most `body_timeout` seconds for the client's next
bytes; a client that stalls longer gets 408 and the connection is closed.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _BodyAborted(Exception):
    pass


def _json_error(code: str, detail: str) -> bytes:
    return json.dumps({"error": code, "detail": detail}).encode()


def too_large_body(limit_bytes: int) -> bytes:
    return _json_error("upload_too_large", f"upload is larger than the limit of {limit_bytes / 1e6:g} MB")


def body_timeout_body(seconds: float) -> bytes:
    return _json_error("body_timeout", f"the request body stalled: no data for {seconds:g} s")


class BodyGuard:
    """ASGI middleware: 413 past `limit_bytes`, 408 when the body stalls for `body_timeout` s (None: no timeout)."""

    def __init__(self, app, limit_bytes: int, body_timeout: float | None = None, slack_bytes: int = 64 * 1024):
        self.app = app
        self.limit_bytes = limit_bytes
        self.body_timeout = body_timeout
        # Multipart framing (boundaries, part headers) adds a little over the file itself.
        self.max_body = limit_bytes + slack_bytes

    @staticmethod
    async def _reject(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._reject(send, 413, too_large_body(self.limit_bytes))
            return
        received = 0
        started = rejected = body_done = False

        async def abort(status: int, body: bytes):
            # Frameworks turn any error raised while reading the body into a 400, so the error response is
            # sent from here, before raising, and whatever the app sends afterwards is dropped.
            nonlocal rejected
            rejected = True
            if not started:
                await self._reject(send, status, body)
            raise _BodyAborted

        async def guarded_receive():
            nonlocal received, body_done
            if rejected:
                return {"type": "http.disconnect"}
            if body_done or self.body_timeout is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.body_timeout)
                except asyncio.TimeoutError:
                    await abort(408, body_timeout_body(self.body_timeout))
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body:
                    await abort(413, too_large_body(self.limit_bytes))
            return message

        async def guarded_send(message):
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _BodyAborted:
            pass


BodySizeLimit = BodyGuard  # its former name


class Busy(Exception):
    """Every analysis slot is taken and the queue is full."""


class AnalysisGate:
    """At most `max_concurrent` analyses at once (decode + score + spectrogram: the memory-heavy part) and at
    most `queue` more waiting for a slot; past that `admit()` raises Busy at once (the API answers 429).

    The slots are the worker threads of a private pool of `max_concurrent` threads (a semaphore that also
    pins the work to the same few threads): large numpy/torch buffers are then only ever allocated by those
    threads, so the C allocator keeps per-thread heaps for them alone instead of for every thread of the
    web server's pool (which measurably inflated the peak RSS; see BENCHMARKS.md).

    Usage: `with gate.admit(): <cheap preparation>; result = gate.run(analysis, *args)`."""

    def __init__(self, max_concurrent: int, queue: int):
        from concurrent.futures import ThreadPoolExecutor
        if max_concurrent < 1 or queue < 0:
            raise ValueError(f"max_concurrent must be >= 1 and queue >= 0, got {max_concurrent}, {queue}")
        self.max_concurrent, self.queue = max_concurrent, queue
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="spoofrl-analysis")
        self._lock = threading.Lock()
        self.admitted = 0  # running + waiting
        self.running = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        with self._lock:
            if self.admitted >= self.max_concurrent + self.queue:
                raise Busy
            self.admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self.admitted -= 1

    def _counted(self, fn, *args):
        with self._lock:
            self.running += 1
        try:
            return fn(*args)
        finally:
            with self._lock:
                self.running -= 1

    def run(self, fn, *args):
        """fn(*args) on a free slot (waiting for one), from inside admit(); returns or raises what fn does."""
        return self._pool.submit(self._counted, fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
