"""The checks at the server's door, before any route runs: Host and Origin (DNS rebinding and
cross-site requests), JSON bodies on state-changing requests, the body size, the token and the rate
limit's idea of who the client is. ``server/app.py`` applies them to every route — the JSON API, the
OpenAI-compatible face, ``/mcp`` and the page alike; its module docstring states the rules.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- Host and Origin

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
"""The names a loopback server always answers to, on any port."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that change state: these need a harmless ``Origin`` and, with a body, JSON."""

HostPort = tuple[str, str]
"""A host name (lower case; an IP address in its short form, without brackets) and a port ("": any)."""


def _host_name(name: str) -> str:
    name = name.lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def split_host(value: str) -> HostPort | None:
    """``name``, ``name:port``, ``[v6]`` or ``[v6]:port`` (a Host header, an origin's authority) as a
    ``HostPort``; None for anything else."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[1:end], value[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = value.partition(":")
    if not name or ":" in port or (port and not (port.isascii() and port.isdigit())):
        return None
    if not value.startswith("[") and not all(c.isascii() and (c.isalnum() or c in "-._") for c in name):
        return None
    return _host_name(name), port


def config_host(value: str) -> HostPort | None:
    """An ``--allowed-host`` value: as ``split_host``, and a bare IPv6 address too."""
    try:
        return str(ipaddress.ip_address(value.strip())), ""
    except ValueError:
        return split_host(value)


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` and ``Origin`` values the server accepts (see the module docstring)."""

    hosts: frozenset[HostPort] | None
    """Accepted Host values; None: any."""
    named: frozenset[HostPort]
    """The hosts the user listed: an origin on one of them is the server's own, whatever the Host."""
    cors_origins: frozenset[str]

    @classmethod
    def of(cls, bind: str, allowed_hosts: list[str], cors_origins: list[str]) -> HostPolicy:
        """The policy of a server bound to ``bind`` (see the module docstring)."""
        named = frozenset(h for h in map(config_host, allowed_hosts) if h is not None)
        cors = frozenset(origin.rstrip("/").lower() for origin in cors_origins)
        if "*" in allowed_hosts or (not is_loopback(bind) and not named):
            return cls(None, named, cors)
        hosts = {(name, "") for name in LOOPBACK_NAMES} | named
        bound = config_host(bind)
        if bound is not None and bound[0] not in ("0.0.0.0", "::"):
            hosts.add((bound[0], ""))
        return cls(frozenset(hosts), named, cors)

    def allows_host(self, host: str | None) -> bool:
        if self.hosts is None:
            return True
        given = split_host(host or "")
        return given is not None and (given in self.hosts or (given[0], "") in self.hosts)

    def allows_origin(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.strip().lower()
        if origin in self.cors_origins:
            return True
        scheme, sep, authority = origin.partition("://")
        if scheme not in ("http", "https") or not sep or "/" in authority or "@" in authority:
            return False  # "null" (sandboxed frames, local files) and anything that is not an origin
        if host is not None and authority == host.strip().lower():
            return True  # the server's own origin
        given = split_host(authority)
        return given is not None and (given in self.named or (given[0], "") in self.named)


class BodyLimit:
    """413 for a body over ``limit`` bytes, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _plain(send, 413, "request body too large")
            return
        seen, too_large, started = 0, False, False

        async def limited() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise _TooLarge
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if too_large and not started:
                return  # the app may catch the error and answer 400: the answer is 413 whatever it says
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, answer)
        except Exception:  # _TooLarge, or what the app made of it (a disconnect, a parse error)
            if not too_large:
                raise
        if too_large and not started:
            await _plain(send, 413, "request body too large")


class _TooLarge(Exception):
    pass


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per client: ``per_minute`` submissions, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 when allowed, else the seconds until the next submission would be."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic()
        tokens, since = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - since) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # forget idle clients rather than grow without bound
            self._buckets = {c: b for c, b in self._buckets.items() if now - b[1] < 120}
        return 0.0


def authorized(request: Request, token: SecretStr | None) -> bool:
    if token is None or not token.get_secret_value():
        return True
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.get_secret_value().encode())


def client_of(request: Request, *, trust_forwarded_for: bool = False) -> str:
    """The rate limit's key for the client: its address (see the module docstring)."""
    peer = request.client.host if request.client else "unknown"
    forwarded = [a.strip() for h in request.headers.getlist("x-forwarded-for") for a in h.split(",")]
    forwarded = [a for a in forwarded if a]
    if forwarded and trust_forwarded_for:
        return forwarded[-1]  # what the nearest proxy saw: the entries before it are the client's to write
    if peer in forwarded or is_loopback(peer):
        # uvicorn (``proxy_headers``, on by default) puts a value from the header in place of a loopback
        # peer: such a request came from this machine, like every other loopback one
        return "loopback"
    return peer


JSON_TYPE = "application/json"


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() != "0")


def refusal(request: Request, policy: HostPolicy) -> JSONResponse | None:
    """The answer to a request from where it must not come, or None (checks before the token's)."""
    host = request.headers.get("host")
    if not policy.allows_host(host):
        return JSONResponse({"detail": "this server does not answer to that Host"}, status_code=421)
    if request.method not in UNSAFE_METHODS:
        return None
    if not policy.allows_origin(request.headers.get("origin"), host):
        return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
    if (_has_body(request) or "content-type" in request.headers) and _media_type(request) != JSON_TYPE:
        return JSONResponse({"detail": "the request body must be application/json"}, status_code=415)
    return None
