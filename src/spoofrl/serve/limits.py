"""Request-body size limit as plain ASGI middleware.

It checks Content-Length up front and also counts the bytes actually received, so a chunked upload
without a length header is cut off as soon as it passes the limit instead of being spooled to disk whole.
"""
from __future__ import annotations

import json


class _BodyTooLarge(Exception):
    pass


def too_large_body(limit_bytes: int) -> bytes:
    return json.dumps({"error": "upload_too_large",
                       "detail": f"upload is larger than the limit of {limit_bytes / 1e6:g} MB"}).encode()


class BodySizeLimit:
    def __init__(self, app, limit_bytes: int, slack_bytes: int = 64 * 1024):
        self.app = app
        self.limit_bytes = limit_bytes
        # Multipart framing (boundaries, part headers) adds a little over the file itself.
        self.max_body = limit_bytes + slack_bytes

    async def _reject(self, send) -> None:
        body = too_large_body(self.limit_bytes)
        await send({"type": "http.response.start", "status": 413,
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
            await self._reject(send)
            return
        received = 0
        started = rejected = False

        async def counting_receive():
            # Frameworks turn any error raised while reading the body into a 400, so the 413 is sent from
            # here, before raising, and whatever the app sends afterwards is dropped.
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request" and not rejected:
                received += len(message.get("body", b""))
                if received > self.max_body:
                    rejected = True
                    if not started:
                        await self._reject(send)
                    raise _BodyTooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            pass
