"""The HTTP fetcher: one URL in, one readable ``Page`` out, within limits the model cannot talk past.

``batch_open`` hands this fetcher URLs the model picked, so every request is treated as hostile input:
the SSRF guard checks the first URL and every redirect hop (we follow redirects ourselves for that
reason), the body is read in a stream and abandoned at ``max_bytes`` *after* decompression (a gzip
bomb stops at the cap, with memory bounded by it), each request runs under a per-read timeout and
each fetch under an overall deadline, and concurrency is capped globally and per host so one step
of many ``batch_open`` calls cannot hammer a single site; on top of that, successive requests to one
host are paced (politeness: a burst of ``host_burst`` at once, then one per ``host_delay_s`` on
average, a token bucket per host that lasts the whole run), while other hosts are not slowed. httpx
errors are translated into ``FetchError`` subclasses here, at the one boundary, with the URL and
status in the message.

Each connection goes to an address the guard checked: the guard's verdict is pinned for the request
and the connection pool dials its addresses, while the name stays in the URL for the ``Host`` header,
SNI and the certificate check. DNS is asked once per hop, so a rebinding server that answers a public
address to the check and ``127.0.0.1`` to a second lookup never gets that second lookup.

Successfully extracted pages go to the fetch cache (``cache.py``) when one is configured, and a fresh
cached page is served without any request, so resumed runs and reruns read what they read before.

``file://`` URLs are refused: local documents are opened through the local index
(``DocumentStore.get_document``, which serves files inside the indexed folders), never by letting the
model read arbitrary paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpcore
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepresearch.errors import ContentTooLarge, FetchError, FetchTimeout, URLBlocked
from deepresearch.fetch import Page
from deepresearch.fetch.cache import FetchCache
from deepresearch.fetch.extract import extract_document
from deepresearch.fetch.guard import Allowlist, Resolver, Vetted, vet_host, vet_url
from deepresearch.retry import parse_retry_after
from deepresearch.tls import shared_ssl_context

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
DEFAULT_ACCEPT = "text/html,application/xhtml+xml,application/pdf;q=0.9,text/plain;q=0.8,*/*;q=0.5"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
PUSHBACK_STATUSES = frozenset({429, 503})
"""A host that answers one of these is slowed down for the rest of the run (``_HostPacer.back_off``)."""
# We decode bodies ourselves (to cap their decompressed size), so we only ask for codings zlib reads.
_ACCEPT_ENCODING = "gzip, deflate"
_GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_HOST_DELAY_S = 0.1
DEFAULT_HOST_BURST = 4
PUSHED_BACK_DELAY_S = 1.0
"""A host that pushed back (429/503) gets at most one request a second from then on, with no burst."""
DEFAULT_BACKOFF_S = 2.0
"""How long a host that pushed back without a ``Retry-After`` is left alone."""
MAX_BACKOFF_S = 10.0
"""The longest ``Retry-After`` honoured: a page that must wait longer fails rather than stall a step."""
DEFAULT_CACHE_TTL_S = 7 * 24 * 3600.0


class FetchConfig(BaseModel):
    """Limits and identity of the HTTP fetcher."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(default=20.0, gt=0)
    """Seconds allowed to connect, and between two reads of the body."""
    total_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds allowed for a whole fetch (redirects and the retry included), so a server that drips
    bytes cannot hold a slot forever."""
    max_bytes: int = Field(default=10_000_000, gt=0)
    """Largest body read, counted after decompression; a larger one raises ``ContentTooLarge``."""
    max_redirects: int = Field(default=5, ge=0)
    """Redirect hops followed (each one checked by the SSRF guard) before giving up."""
    allow_private: bool = False
    """Allow every loopback and private address (tests, intranets); the scheme check still applies."""
    allowlist: list[str] = Field(default_factory=list)
    """Host names (exact), IP addresses and CIDR ranges that may be reached although private, e.g.
    ``["wiki.corp.example", "10.20.0.0/16", "::1"]``; checked on every redirect hop like the rest."""
    user_agent: str = DEFAULT_USER_AGENT
    """Sent as ``User-Agent``; a desktop browser's, because many sites refuse unknown clients."""
    max_concurrency: int = Field(default=8, ge=1)
    """Requests in flight at once, across all hosts."""
    per_host_concurrency: int = Field(default=4, ge=1)
    """Requests in flight at once to one host (host and port): a step's pages of one site load
    together, as a browser's would (it opens six)."""
    retry_backoff_s: float = Field(default=0.5, ge=0)
    """Pause before the single retry after a connection error or a 429/502/503/504 (a 429 or 503 also
    waits out the host's ``Retry-After``: see ``_HostPacer.back_off``)."""
    host_delay_s: float = Field(default=DEFAULT_HOST_DELAY_S, ge=0)
    """Politeness: on average, seconds between the starts of two requests to the same host (host and
    port), beyond a burst of ``host_burst``; 0 turns it off. Requests to other hosts are not held back."""
    host_burst: int = Field(default=DEFAULT_HOST_BURST, ge=1)
    """Requests to one host that may start at once before ``host_delay_s`` paces the rest (a token
    bucket refilled at one per ``host_delay_s``, carried across steps); 1 spaces every request."""
    cache_path: Path | None = None
    """SQLite file of extracted pages, created on the first successful fetch; ``None``: no cache."""
    cache_ttl_s: float = Field(default=DEFAULT_CACHE_TTL_S, ge=0)
    """Seconds a cached page stays fresh; 0 turns the cache off."""

    @field_validator("allowlist")
    @classmethod
    def _valid_allowlist(cls, entries: list[str]) -> list[str]:
        Allowlist.parse(entries)  # raises ValueError naming a bad entry
        return [entry.strip() for entry in entries if entry.strip()]


@dataclass(slots=True)
class _Body:
    url: str
    status: int
    content_type: str
    data: bytes
    exempted: bool = False
    """Some hop passed the SSRF guard only through ``allow_private`` or the allowlist."""


class _Transient(FetchError):
    """A failure worth one more try (connection trouble, 429/502/503/504); never leaves this module."""

    def __init__(self, message: str, *, pushed_back: float | None = None) -> None:
        super().__init__(message)
        self.pushed_back = pushed_back
        """For a 429/503: how long the host asked to be left alone (``Retry-After``, bounded)."""


class HttpFetcher:
    """Fetches http(s) URLs into ``Page``s; one instance (one connection pool) per event loop."""

    def __init__(
        self,
        config: FetchConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``resolver`` answers the guard's DNS questions (the system's by default); ``network_backend``
        opens the connections to the addresses it checked (httpcore's by default). A ``transport``
        replaces both ends: whatever it connects to is its own business (tests, mocks). ``clock``
        (seconds, monotonic) and ``sleep`` time the politeness gaps and the retry's pause, so tests
        can run them in virtual time."""
        self._config = config or FetchConfig()
        self._resolver = resolver
        self._clock = clock
        self._sleep = sleep
        if transport is None:
            backend = _PinnedBackend(self._vet_host, network_backend or httpcore.AnyIOBackend())
            transport = _PinnedTransport(backend)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self._config.timeout_s),
            follow_redirects=False,
            verify=shared_ssl_context(),
            headers={
                "User-Agent": self._config.user_agent,
                "Accept": DEFAULT_ACCEPT,
                "Accept-Encoding": _ACCEPT_ENCODING,
                "Accept-Language": "en-US,en;q=0.9,zh-CN;q=0.8",
            },
        )
        self._slots = asyncio.Semaphore(self._config.max_concurrency)
        self._host_slots = _HostSlots(self._config.per_host_concurrency)
        self._pacer = _HostPacer(
            self._config.host_delay_s, burst=self._config.host_burst, clock=clock, sleep=sleep
        )
        self._allowlist = Allowlist.parse(self._config.allowlist)
        self._cache = (
            FetchCache(self._config.cache_path, ttl_s=self._config.cache_ttl_s)
            if self._config.cache_path is not None and self._config.cache_ttl_s > 0
            else None
        )

    @property
    def config(self) -> FetchConfig:
        return self._config

    async def __aenter__(self) -> HttpFetcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool and the cache."""
        await self._client.aclose()
        if self._cache is not None:
            self._cache.close()

    async def fetch(self, url: str) -> Page:
        """Fetch ``url`` (following checked redirects) and extract its text, or serve it from the cache."""
        if url.strip().lower().startswith("file:"):
            raise URLBlocked(
                f"refused {url}: local files are read through the local index (the folders added with "
                "`deepresearch index add`), never fetched"
            )
        cached = await self._from_cache(url)
        if cached is not None:
            return cached
        started = self._clock()
        try:
            async with asyncio.timeout(self._config.total_timeout_s):
                body = await self._get_with_retry(url)
        except TimeoutError as exc:
            raise FetchTimeout(
                f"no complete answer from {url} within {self._config.total_timeout_s:g}s"
            ) from exc
        document = await asyncio.to_thread(extract_document, body.data, body.content_type, body.url)
        logger.info(
            "fetched %s: %d %s, %d bytes in %.2fs",
            body.url,
            body.status,
            body.content_type or "-",
            len(body.data),
            self._clock() - started,
        )
        page = Page(
            url=body.url,
            title=document.title or body.url,
            text=document.text,
            content_type=body.content_type,
            status=body.status,
            published=document.published,
        )
        if self._cache is not None:
            await self._cache.put(url, page, exempted=body.exempted)
        return page

    async def _from_cache(self, url: str) -> Page | None:
        """A fresh cached page; one that needed an SSRF exemption is checked again under this config."""
        if self._cache is None:
            return None
        hit = await self._cache.get(url)
        if hit is None:
            return None
        if hit.exempted:
            for checked in dict.fromkeys([url, hit.page.url]):
                await self._vet(checked)
        logger.info(
            "fetched %s from the cache (%.0fs old)", hit.page.url, max(0.0, time.time() - hit.fetched_at)
        )
        return hit.page

    async def _vet(self, url: str) -> Vetted:
        return await vet_url(
            url, allow_private=self._config.allow_private, allowlist=self._allowlist, resolver=self._resolver
        )

    async def _vet_host(self, host: str, port: int) -> Vetted:
        return await vet_host(
            host,
            port,
            target=f"{host}:{port}",
            allow_private=self._config.allow_private,
            allowlist=self._allowlist,
            resolver=self._resolver,
        )

    async def _get_with_retry(self, url: str) -> _Body:
        try:
            return await self._follow_redirects(url)
        except _Transient as first:
            logger.info("retrying %s after: %s", url, first)
        await self._sleep(self._config.retry_backoff_s)
        try:
            return await self._follow_redirects(url)
        except _Transient as second:
            raise FetchError(str(second)) from second

    async def _follow_redirects(self, url: str) -> _Body:
        """GET ``url``, following redirects by hand so that the guard sees every hop."""
        current = url
        exempted = False
        for _ in range(self._config.max_redirects + 1):
            vetted = await self._vet(current)
            exempted = vetted.exempted or exempted
            result = await self._get_once(current, vetted)
            if isinstance(result, _Body):
                result.exempted = exempted
                return result
            logger.debug("redirect %s -> %s", current, result)
            current = result
        raise FetchError(f"too many redirects (more than {self._config.max_redirects}) starting at {url}")

    async def _get_once(self, url: str, vetted: Vetted) -> _Body | str:
        """One request to the addresses ``vetted`` allows: the body, or the absolute URL a redirect
        points to."""
        parsed = httpx.URL(url)
        host = f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
        async with self._host_slots.hold(host):
            async with self._pacer.turn(host):
                await self._slots.acquire()
            try:
                return await self._request(url, vetted)
            except _Transient as exc:
                if exc.pushed_back is not None:
                    logger.info("%s pushed back: slowing down, next request in %.1fs", host, exc.pushed_back)
                    self._pacer.back_off(host, exc.pushed_back)
                raise
            finally:
                self._slots.release()

    async def _request(self, url: str, vetted: Vetted) -> _Body | str:
        """One GET under the limits already taken: the body, or where a redirect points."""
        with _translate_errors(url, self._config.timeout_s):
            pin = _PINNED.set(vetted)
            try:
                response = await self._client.send(self._client.build_request("GET", url), stream=True)
            finally:
                _PINNED.reset(pin)
            try:
                if response.is_redirect:
                    return str(response.url.join(response.headers["location"]))
                status = response.status_code
                if status >= 400:
                    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
                    message = f"HTTP {status}{reason} for {url}"
                    if status in PUSHBACK_STATUSES:
                        asked = parse_retry_after(response.headers)
                        wait = DEFAULT_BACKOFF_S if asked is None else min(asked, MAX_BACKOFF_S)
                        raise _Transient(message, pushed_back=wait)
                    raise (_Transient if status in RETRY_STATUSES else FetchError)(message)
                data = await _read_capped(response, self._config.max_bytes, url)
            finally:
                await response.aclose()
        return _Body(
            url=str(response.url),
            status=status,
            content_type=response.headers.get("content-type", ""),
            data=data,
        )


_NEXT_ADDRESS_AFTER_S = 3.0
"""Connect timeout of each checked address but the last, so that the next one is tried soon enough."""
_PINNED: contextvars.ContextVar[Vetted | None] = contextvars.ContextVar("fetch_pinned", default=None)
"""The guard's verdict for the request this task is sending; set by ``_request`` around the send."""


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to a host only at an address the guard checked for it.

    httpcore opens a connection in the task that sends the request, so ``connect_tcp`` sees the verdict
    pinned for that request and dials its addresses (TLS still verifies, and sends SNI for, the name:
    httpcore takes those from the URL). A connection with no matching pin — none is expected — is
    vetted here, with its own single lookup, so no path connects to an address nobody checked.
    """

    def __init__(
        self, vet: Callable[[str, int], Awaitable[Vetted]], inner: httpcore.AsyncNetworkBackend
    ) -> None:
        self._vet = vet
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        vetted = _PINNED.get()
        if vetted is None or (vetted.host, vetted.port) != (host.rstrip(".").lower().strip("[]"), port):
            vetted = await self._vet(host, port)
        if vetted.addresses is None:  # any address will do (allow_private, an allowlisted name)
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        failure: Exception = httpcore.ConnectError(f"no address to connect to for {host}")
        last = len(vetted.addresses) - 1
        for i, address in enumerate(vetted.addresses):
            # one dead address (a black-holed IPv6 route) must not eat the whole connect timeout
            patience = timeout if i == last or timeout is None else min(timeout, _NEXT_ADDRESS_AFTER_S)
            try:
                return await self._inner.connect_tcp(
                    str(address), port, patience, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the fetcher does not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the connection pool opening its connections through ``backend``."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(verify=shared_ssl_context())
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=shared_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


@contextlib.contextmanager
def _translate_errors(url: str, timeout_s: float) -> Iterator[None]:
    """The one place where httpx exceptions become ours."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise FetchTimeout(f"timed out after {timeout_s:g}s waiting for {url}") from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise _Transient(f"could not fetch {url}: {exc or type(exc).__name__}") from exc
    except (httpx.HTTPError, httpx.InvalidURL, zlib.error) as exc:
        raise FetchError(f"could not fetch {url}: {exc or type(exc).__name__}") from exc


async def _read_capped(response: httpx.Response, max_bytes: int, url: str) -> bytes:
    """Read the body, undoing its Content-Encoding, and stop as soon as it passes ``max_bytes``."""
    declared = response.headers.get("content-length", "")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity") and declared.isdigit() and int(declared) > max_bytes:
        raise ContentTooLarge(f"{url} declares {int(declared)} bytes, more than the {max_bytes}-byte limit")
    if response.is_stream_consumed:
        # A transport that buffered the body already (httpx.MockTransport given ``content=``): httpx
        # has decoded it, so only the size is left to check.
        if len(response.content) > max_bytes:
            raise ContentTooLarge(f"{url} is larger than the {max_bytes}-byte limit")
        return response.content
    decoder = _CappedDecoder(encoding, max_bytes, url)
    chunks: list[bytes] = []
    async for raw in response.aiter_raw():
        chunks.append(decoder.feed(raw))
    chunks.append(decoder.flush())
    return b"".join(chunks)


class _CappedDecoder:
    """Undo gzip/deflate with a hard cap on the output.

    httpx's own decoders inflate each network chunk in full, so a 64 KiB chunk of a gzip bomb could
    become tens of megabytes before any size check runs; here zlib is asked for at most the bytes
    still allowed, so memory never exceeds the cap.
    """

    def __init__(self, encoding: str, limit: int, url: str) -> None:
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise FetchError(f"unsupported Content-Encoding {encoding!r} from {url}")
        self._encoding = encoding
        self._limit = limit
        self._url = url
        self._produced = 0
        self._inflater: zlib._Decompress | None = (
            self._new_inflater() if encoding not in ("", "identity") else None
        )
        self._started = False
        self._done = False
        self._held = b""
        """Bytes kept until there are enough to decide something (the deflate flavour, a next gzip member)."""

    def _new_inflater(self, raw_deflate: bool = False) -> zlib._Decompress:
        if self._encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)

    def _count(self, produced: int) -> None:
        self._produced += produced
        if self._produced > self._limit:
            raise ContentTooLarge(f"{self._url} is larger than the {self._limit}-byte limit")

    def feed(self, data: bytes) -> bytes:
        if self._inflater is None:
            self._count(len(data))
            return data
        data, self._held = self._held + data, b""
        if not self._started:
            # "deflate" is meant to be zlib-wrapped, but some servers send a raw deflate stream;
            # the first two bytes tell which.
            if len(data) < 2:
                self._held = data
                return b""
            self._started = True
            if self._encoding == "deflate" and not _has_zlib_header(data):
                self._inflater = self._new_inflater(raw_deflate=True)
        out = bytearray()
        while data and not self._done:
            if self._inflater.eof:
                # gzip allows several members back to back; other bytes after the end are ignored.
                if self._encoding == "deflate" or (len(data) >= 2 and not data.startswith(_GZIP_MAGIC)):
                    self._done = True
                    break
                if len(data) < 2:
                    self._held = data
                    break
                self._inflater = self._new_inflater()
            piece = self._inflater.decompress(data, self._limit - self._produced + 1)
            self._count(len(piece))
            out += piece
            data = self._inflater.unused_data if self._inflater.eof else self._inflater.unconsumed_tail
        return bytes(out)

    def flush(self) -> bytes:
        if self._inflater is None or self._done:
            return b""
        tail = self._inflater.flush()
        self._count(len(tail))
        return tail


def _has_zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


class _HostSlots:
    """Per-host semaphores, created on first use and dropped when no request holds them."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        semaphore, users = self._slots.get(host) or (asyncio.Semaphore(self._per_host), 0)
        self._slots[host] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[host]
            if users <= 1:
                del self._slots[host]
            else:
                self._slots[host] = (semaphore, users - 1)


class _HostPacer:
    """Politeness as a token bucket per host: a burst of ``burst`` requests may start at once, and
    beyond it starts are paced so that no host sees more than ``burst + t / delay`` requests in any
    ``t`` seconds — on average one per ``delay``, however long the run.

    Why a bucket rather than a fixed gap: an agent step that opens three pages of one site would
    otherwise wait two gaps for pages a browser would load together, every step; the bucket lets that
    burst through and refills while the model thinks, so a run whose pages share a host is no slower
    than one spread over many, as long as it asks for no more than the host's rate on average. The
    default rate (ten a second beyond the burst, four in flight) is well below what a browser asks
    of a site for one page with its images and scripts; a host that says it is too much (429, 503)
    is left alone for as long as it asks (``Retry-After``, up to ``MAX_BACKOFF_S``) and from then
    on gets at most one request a second, with no burst (``back_off``).

    A request takes its host's turn (a per-host lock, held only while it waits to start, so requests
    to one host start in arrival order), sleeps until the bucket holds a whole token, takes a global
    slot inside the turn, and spends the token as it leaves the turn. Holding the turn while waiting
    for a global slot only delays requests to the same host, which would have had to wait anyway;
    other hosts are not held back. The fetcher lives for the whole run, so a host's bucket carries
    over from one step to the next.
    """

    def __init__(
        self,
        delay: float,
        *,
        burst: int = 1,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._delay = delay
        self._burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._locks: dict[str, asyncio.Lock] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        """host → (tokens, clock reading they were counted at); a host not here has a full bucket."""
        self._pushed_back: dict[str, float] = {}
        """host → the clock reading before which it gets no request (it answered 429 or 503)."""

    def _pace(self, host: str) -> tuple[float, int]:
        """The host's (delay, burst): the configured ones, or the slow ones once it pushed back."""
        if host in self._pushed_back:
            return max(self._delay, PUSHED_BACK_DELAY_S), 1
        return self._delay, self._burst

    def _tokens(self, host: str, now: float) -> float:
        """The host's tokens at ``now``: what was left plus one per delay since, at most its burst."""
        delay, burst = self._pace(host)
        tokens, counted_at = self._buckets.get(host, (float(burst), now))
        return min(float(burst), tokens + max(0.0, now - counted_at) / delay)

    def back_off(self, host: str, wait: float) -> None:
        """``host`` answered 429 or 503: no request to it for ``wait`` seconds, and from then on at
        most one a second (``PUSHED_BACK_DELAY_S``), with no burst."""
        now = self._clock()
        self._pushed_back[host] = max(self._pushed_back.get(host, 0.0), now + wait)
        self._buckets[host] = (0.0, now + wait)

    @contextlib.asynccontextmanager
    async def turn(self, host: str) -> AsyncIterator[None]:
        if self._delay <= 0 and host not in self._pushed_back:
            yield
            return
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            now = self._clock()
            delay, _ = self._pace(host)
            wait = max((1.0 - self._tokens(host, now)) * delay, self._pushed_back.get(host, now) - now)
            if wait > 0:
                logger.debug("waiting %.2fs before the next request to %s", wait, host)
                await self._sleep(wait)
            yield
            now = self._clock()
            # at least one token is there: the wait above covered the shortfall, and time only adds
            self._buckets[host] = (max(0.0, self._tokens(host, now) - 1.0), now)
        if len(self._locks) > 256:
            self._forget_idle_hosts()

    def _forget_idle_hosts(self) -> None:
        """Drop hosts whose bucket is full again: forgetting them changes nothing."""
        now = self._clock()
        for host, lock in list(self._locks.items()):
            if not lock.locked() and host not in self._pushed_back and self._tokens(host, now) >= self._burst:
                del self._locks[host]
                self._buckets.pop(host, None)
