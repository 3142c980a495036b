"""The uvicorn server of `spoofrl serve`, with the connection-level limits uvicorn lacks.

uvicorn (checked against 0.54, HTTP/1.1 protocol `uvicorn.protocols.http.h11_impl.H11Protocol`) has a
keep-alive timeout only between requests: a connection that sends nothing, or half a request head and
then nothing (slowloris), stays open for ever. `HeaderTimeoutProtocol` closes a connection whose request
head is not complete `header_timeout` seconds after the connection opened or after the first byte of the
head arrived; it also covers the rest of a request body nobody reads any more (the app answered early).
While the app reads a body, the app's own body read timeout applies (spoofrl.serve.limits.BodyGuard).

The h11 protocol is used whatever is installed (uvicorn's "auto" picks httptools when present), so the
timeout always applies. uvicorn's `limit_concurrency` caps open connections plus running requests (past
it uvicorn answers 503 itself, in plain text), `timeout_keep_alive` closes idle keep-alive connections.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for the request head (class attribute; see make_protocol)."""

    header_timeout: float = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head_timer()  # a fresh connection has no keep-alive timer in uvicorn: this one covers it

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _waiting_for_client(self) -> bool:
        """True while the client owes us bytes that no running request will read: an incomplete request
        head, or the rest of a body after the app already answered."""
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # a request is running; reading its body is the app's business
        return self.conn.their_state in (h11.IDLE, h11.SEND_BODY)

    def _update_head_timer(self) -> None:
        if self.transport.is_closing() or not self._waiting_for_client():
            self._cancel_head_timer()
        else:
            self._arm_head_timer()  # a deadline, not reset by more bytes: trickling does not extend it

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._waiting_for_client():
            return
        log.debug("closing a connection whose request head was not complete within %g s", self.header_timeout)
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass
        self.transport.close()


def make_protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """A protocol class with this header timeout (uvicorn builds one protocol per connection from it)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": float(header_timeout)})


@dataclass
class ServerOptions:
    """Connection-level settings (the options of `spoofrl serve` with the same names)."""
    header_timeout: float = 10.0  # s to send a complete request head
    keep_alive: float = 5.0  # s an idle keep-alive connection stays open
    max_connections: int = 64  # open connections + running requests; past it uvicorn answers 503


def build_server(app, host: str, port: int, options: ServerOptions | None = None, log_level: str = "warning"):
    """A `uvicorn.Server` for `app`; call .run() (blocking) or run it in a thread."""
    import uvicorn
    options = options or ServerOptions()
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=make_protocol(options.header_timeout),
                            limit_concurrency=options.max_connections, timeout_keep_alive=options.keep_alive)
    return uvicorn.Server(config)
