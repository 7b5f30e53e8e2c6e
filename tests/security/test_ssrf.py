"""SSRF through the fetcher, end to end: nothing the model names may reach this machine's own network.

The break (issue 11): the guard resolved a name and checked the answer, then the HTTP client resolved
it again to connect, so a rebinding DNS server (public address first, ``127.0.0.1`` next) reached
loopback every time. The fetcher now takes its resolver as a dependency and connects to the address
the guard checked. Here the resolver is a scripted one (no DNS traffic), and the socket layer is a
recording ``httpcore`` network backend that dials only loopback — standing in the fake website for a
"public" address where a test says so — so each test sees exactly which addresses were dialled.

The literal and scheme forms that already held are kept here as one parametrised end-to-end check
against the loopback site (the guard's unit tests, with the reasons, are in
``tests/fetch/test_guard.py``; redirect hops to private literals in ``tests/fetch/test_http.py``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import pytest

from deepresearch.errors import FetchError, URLBlocked
from deepresearch.fetch import Page
from deepresearch.fetch.guard import IPAddress
from deepresearch.fetch.http import FetchConfig, HttpFetcher
from tests.fakes.web_server import ARTICLE_TITLE, FakeWebSite

PUBLIC_IP = "93.184.215.14"
"""A public address the guard accepts; only the recording backend ever 'connects' to it."""
ARTICLE = "/articles/bloom-filters.html"


class ScriptedDNS:
    """The fetcher's resolver: each name answers from its list in turn (the last answer repeats); an
    answer of several addresses is written ``"a,b"``."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = {name: list(queue) for name, queue in answers.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(a) for a in answer.split(",")]


class RecordingNetwork(httpcore.AsyncNetworkBackend):
    """The socket layer: records each address dialled and each TLS server name sent.

    ``stand_ins`` maps a public address to the loopback address of a local server playing that host;
    other non-loopback addresses are unreachable. A host *name* reaching this layer would mean a second
    lookup behind the guard's back, so it fails the test.
    """

    def __init__(self, stand_ins: dict[str, str] | None = None) -> None:
        self.stand_ins = stand_ins or {}
        self.dialled: list[tuple[str, int]] = []
        self.tls_names: list[str | None] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialled.append((host, port))
        target = ipaddress.ip_address(self.stand_ins.get(host, host))  # ValueError for a name
        if not target.is_loopback:
            raise httpcore.ConnectError(f"{host} is unreachable from the tests")
        stream = await self._real.connect_tcp(str(target), port, timeout, local_address, socket_options)
        return _TLSProbe(stream, self.tls_names)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no unix sockets here")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _TLSProbe(httpcore.AsyncNetworkStream):
    """A plain connection that records the server name a TLS handshake would send, then stops there."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, names: list[str | None]) -> None:
        self._stream = stream
        self._names = names

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        self._names.append(server_hostname)
        await self._stream.aclose()
        raise httpcore.ConnectError("the test site speaks no TLS")

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


@pytest.fixture
def site(fake_web_server: FakeWebSite) -> FakeWebSite:
    fake_web_server.reset()
    return fake_web_server


@pytest.fixture
def port(site: FakeWebSite) -> int:
    return int(site.base_url.rsplit(":", 1)[1])


GUARDED = FetchConfig(timeout_s=2.0, total_timeout_s=10.0, retry_backoff_s=0.0, host_delay_s=0)
"""The guard on (no private addresses), tight limits, an immediate retry, no politeness delay."""


def fetch(url: str, dns: ScriptedDNS, network: RecordingNetwork, config: FetchConfig = GUARDED) -> Page:
    async def main() -> Page:
        async with HttpFetcher(config, resolver=dns, network_backend=network) as fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(main())


# --- DNS rebinding


def test_a_rebinding_name_never_reaches_loopback(site: FakeWebSite, port: int) -> None:
    dns = ScriptedDNS({"rebind.example.com": [PUBLIC_IP, "127.0.0.1"]})
    network = RecordingNetwork()  # the public address is unreachable: only a second lookup would connect
    with pytest.raises(FetchError):
        fetch(f"http://rebind.example.com:{port}{ARTICLE}", dns, network)
    assert sum(site.hits.values()) == 0  # the loopback site saw nothing
    assert network.dialled and all(host == PUBLIC_IP for host, _ in network.dialled)
    # the retry asks DNS again and gets the loopback answer, which the guard refuses before dialling
    assert dns.lookups == ["rebind.example.com", "rebind.example.com"]


def test_a_rebinding_redirect_target_is_refused(site: FakeWebSite, port: int) -> None:
    other_public = "93.184.215.15"  # unreachable: only a second lookup could lead anywhere
    dns = ScriptedDNS({"start.example.com": [PUBLIC_IP], "rebind.example.com": [other_public, "127.0.0.1"]})
    network = RecordingNetwork({PUBLIC_IP: "127.0.0.1"})  # the site plays start.example.com
    target = f"http://rebind.example.com:{port}{ARTICLE}"
    with pytest.raises(URLBlocked, match=r"rebind\.example\.com is a loopback address"):
        fetch(f"http://start.example.com:{port}/redirect-to?url={target}", dns, network)
    # first try: the hop is pinned to its public answer and fails to connect; the retry's lookup
    # answers loopback and the guard refuses it before anything is dialled
    assert [host for host, _ in network.dialled if host != PUBLIC_IP] == [other_public]
    assert site.hits[ARTICLE] == 0 and site.hits["/redirect-to"] == 2


def test_the_checked_address_is_dialled_and_the_name_is_kept(site: FakeWebSite, port: int) -> None:
    dns = ScriptedDNS({"docs.example.com": [PUBLIC_IP, "127.0.0.1"]})
    network = RecordingNetwork({PUBLIC_IP: "127.0.0.1"})  # the site plays docs.example.com
    page = fetch(f"http://docs.example.com:{port}{ARTICLE}", dns, network)
    assert page.title == ARTICLE_TITLE and page.url == f"http://docs.example.com:{port}{ARTICLE}"
    assert network.dialled == [(PUBLIC_IP, port)]  # the pinned address, not the name
    assert dns.lookups == ["docs.example.com"]  # one lookup per hop: nothing left to rebind
    assert site.headers[-1]["host"] == f"docs.example.com:{port}"


def test_every_checked_address_is_tried_in_turn_and_only_those(site: FakeWebSite, port: int) -> None:
    dead = "93.184.215.15"
    dns = ScriptedDNS({"multi.example.com": [f"{dead},{PUBLIC_IP}", "127.0.0.1"]})
    network = RecordingNetwork({PUBLIC_IP: "127.0.0.1"})
    assert fetch(f"http://multi.example.com:{port}{ARTICLE}", dns, network).title == ARTICLE_TITLE
    assert network.dialled == [(dead, port), (PUBLIC_IP, port)] and dns.lookups == ["multi.example.com"]
    dns = ScriptedDNS({"mixed.example.com": [f"{PUBLIC_IP},127.0.0.1"]})  # one bad address spoils the name
    with pytest.raises(URLBlocked, match="loopback"):
        fetch(f"http://mixed.example.com:{port}{ARTICLE}", dns, RecordingNetwork())
    assert site.hits[ARTICLE] == 1


def test_tls_names_the_host_while_connecting_to_the_pinned_address(site: FakeWebSite, port: int) -> None:
    dns = ScriptedDNS({"secure.example.com": [PUBLIC_IP]})
    network = RecordingNetwork({PUBLIC_IP: "127.0.0.1"})
    with pytest.raises(FetchError):  # the probe stops at the handshake
        fetch(f"https://secure.example.com:{port}/", dns, network)
    assert network.dialled and all(host == PUBLIC_IP for host, _ in network.dialled)
    assert network.tls_names and set(network.tls_names) == {"secure.example.com"}  # SNI and cert name
    assert sum(site.hits.values()) == 0


def test_an_allowlisted_name_is_pinned_to_its_checked_private_address(site: FakeWebSite, port: int) -> None:
    dns = ScriptedDNS({"wiki.corp.example": ["127.0.0.1"]})
    network = RecordingNetwork()
    config = GUARDED.model_copy(update={"allowlist": ["127.0.0.0/8"]})
    assert fetch(f"http://wiki.corp.example:{port}{ARTICLE}", dns, network, config).title == ARTICLE_TITLE
    assert network.dialled == [("127.0.0.1", port)] and dns.lookups == ["wiki.corp.example"]
    assert site.headers[-1]["host"] == f"wiki.corp.example:{port}"


# --- forms that already held, end to end against the loopback site (literals: no DNS involved)


def fetch_plain(url: str, config: FetchConfig = GUARDED) -> Page:
    async def main() -> Page:
        async with HttpFetcher(config) as fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(main())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://127.1:{port}/",
        "http://0x7f.1:{port}/",
        "http://0x7f000001:{port}/",
        "http://2130706433:{port}/",
        "http://017700000001:{port}/",
        "http://0177.0.0.1:{port}/",
        "http://0:{port}/",
        "http://0.0.0.0:{port}/",
        "http://[::1]:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://[::ffff:7f00:1]:{port}/",
        "http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/",
        "http://[fe80::1]:{port}/",
        "http://169.254.169.254:{port}/latest/meta-data/",
        "http://localhost:{port}/",
        "http://LOCALHOST.:{port}/",
        "http://user:pass@127.0.0.1:{port}/",
        "file:///etc/passwd",
        "ftp://127.0.0.1:{port}/",
        "gopher://127.0.0.1:{port}/_GET%20/",
        "dict://127.0.0.1:{port}/info",
        "data:text/html,<h1>hi</h1>",
    ],
)
def test_private_forms_and_other_schemes_are_refused(site: FakeWebSite, port: int, url: str) -> None:
    with pytest.raises(URLBlocked):
        fetch_plain(url.format(port=port))
    assert sum(site.hits.values()) == 0


@pytest.mark.parametrize(
    "target",
    [
        "http://127.1:{port}/",
        "http://0x7f000001:{port}/",
        "http://[::1]:{port}/",
        "http://0:{port}/",
    ],
)
def test_redirects_to_private_forms_are_refused(site: FakeWebSite, port: int, target: str) -> None:
    allowed = GUARDED.model_copy(update={"allowlist": ["127.0.0.1"]})  # the site itself, nothing else
    with pytest.raises(URLBlocked):
        fetch_plain(site.url(f"/redirect-to?url={target.format(port=port)}"), allowed)
    assert site.hits["/redirect-to"] == 1 and sum(site.hits.values()) == 1
