"""Host-header allow list: the guard against DNS rebinding.

A web page on an attacker's site can make the browser resolve its own name (evil.example) to 127.0.0.1 and
then talk to a server on this machine as if it were the same origin. What gives it away is the Host header:
the browser sends the attacker's name. So the server answers only the names it is known by: the loopback
names, the --host it listens on, names added with --allow-host, and (when it listens on every interface)
this machine's hostname. A refused request gets 400 {"error": "bad_host"} before the app reads its body.
"""
from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable

# Always answered: the names of this machine's loopback interface.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
ANY_HOST = "*"  # allows every Host header: no DNS-rebinding protection
_PORT = re.compile(r"\d{0,5}")
_NAME = re.compile(r"[a-z0-9._~%:-]+")  # DNS names, IPv4 and (unbracketed here) IPv6 literals


def normalize_host(value: str) -> str | None:
    """A Host header (or an allow-list entry) as a bare lower-case name: port, IPv6 brackets and a trailing
    dot removed. None when it is malformed (an empty name, a non-numeric port, an unclosed bracket)."""
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[1:end], host[end + 1:]
        if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
            return None
    elif host.count(":") == 1:  # name:port (an IPv6 literal has more than one colon and no port without [])
        name, port = host.split(":")
        if not _PORT.fullmatch(port):
            return None
    else:
        name = host
    name = name.rstrip(".")
    return name if name and _NAME.fullmatch(name) else None


def allowed_host_names(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The allow list of `spoofrl serve`: loopback names, the --host value, --allow-host names, and this
    machine's hostname when listening on every interface (other names, e.g. a public DNS name or a LAN IP
    the clients use, must be added with --allow-host)."""
    names = list(LOCAL_HOSTS)
    if bind_host in WILDCARD_BINDS:
        names.append(socket.gethostname())
    else:
        names.append(bind_host)
    names.extend(extra)
    return names


class HostCheck:
    """ASGI middleware: refuse requests whose Host header is not in `allowed` (ANY_HOST allows all)."""

    def __init__(self, app, allowed: Iterable[str]):
        self.app = app
        allowed = list(allowed)
        self.any = ANY_HOST in allowed
        self.allowed = frozenset(n for n in (normalize_host(a) for a in allowed if a != ANY_HOST) if n)

    def accepts(self, host_header: str | None) -> bool:
        if self.any:
            return True
        name = normalize_host(host_header) if host_header else None
        return name is not None and name in self.allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self.any:
            await self.app(scope, receive, send)
            return
        raw = [v for k, v in scope.get("headers") or [] if k == b"host"]
        host = raw[0].decode("latin-1") if len(raw) == 1 else None  # none or several Host headers: refused
        if self.accepts(host):
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if host is None else f"Host {host[:100]!r}"
        detail = (f"{shown} is not a name this server answers to (a guard against DNS rebinding); "
                  f"start it with --allow-host NAME to accept another name")
        body = json.dumps({"error": "bad_host", "detail": detail}).encode()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
