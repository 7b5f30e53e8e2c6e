"""The SSRF guard: what it refuses and what it lets through, without any DNS traffic.

IP literals need no resolver; host names are resolved through a patched ``socket.getaddrinfo`` (the
default resolver) or an injected one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from deepresearch.errors import FetchError, URLBlocked
from deepresearch.fetch.guard import Allowlist, blocked_reason, check_url, vet_url


def check(url: str, *, allow_private: bool = False) -> None:
    asyncio.run(check_url(url, allow_private=allow_private))


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name → addresses answered by a fake ``getaddrinfo``; unknown names fail to resolve."""
    table: dict[str, list[str]] = {}

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/x", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.0.1/router", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.251/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved|private"),
        ("http://[fc00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback address inside IPv6"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[64:ff9b::a00:1]/", "private address inside IPv6"),
        ("http://[2002:7f00:1::]/", "loopback address inside IPv6"),
        ("http://localhost:8000/admin", "names this machine"),
        ("http://LOCALHOST./", "names this machine"),
        ("http://api.localhost/", "names this machine"),
        ("http://metadata.google.internal/computeMetadata/v1/", "private network"),
        ("http://printer.local/", "private network"),
        ("http://127.1/", "non-standard numeric"),
        ("http://2130706433/", "non-standard numeric"),
        ("http://0x7f000001/", "non-standard numeric"),
        ("http://user:secret@10.0.0.1/", "private"),
        ("http://evil.example\\@127.0.0.1/", "loopback"),
    ],
)
def test_private_and_special_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(URLBlocked, match=reason) as caught:
        check(url)
    assert "refused" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://93.184.215.14/pub/",
        "gopher://93.184.215.14/",
        "javascript:alert(1)",
        "//93.184.215.14/",
    ],
)
def test_only_http_and_https_are_allowed(url: str) -> None:
    with pytest.raises(URLBlocked, match="only http and https"):
        check(url)
    with pytest.raises(URLBlocked, match="only http and https"):
        check(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/",
        "https://93.184.215.14:8443/path?q=1",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
        "http://[::ffff:93.184.215.14]/",
        "https://1.1.1.1/dns-query",
    ],
)
def test_public_ip_literals_pass_without_dns(url: str, resolver: dict[str, list[str]]) -> None:
    check(url)  # the empty resolver would fail any lookup


def test_private_addresses_pass_when_allowed(resolver: dict[str, list[str]]) -> None:
    for url in (
        "http://127.0.0.1:8000/",
        "http://[::1]/",
        "http://localhost/",
        "http://10.0.0.5/",
        "http://intranet/",
    ):
        check(url, allow_private=True)


def test_host_names_are_judged_by_every_address_they_resolve_to(resolver: dict[str, list[str]]) -> None:
    resolver["docs.example.org"] = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    resolver["rebind.example.org"] = ["93.184.215.14", "10.0.0.7"]
    resolver["wiki.corp.example"] = ["192.168.10.20"]
    check("https://docs.example.org/guide")
    with pytest.raises(URLBlocked, match=r"rebind\.example\.org is a private address \(10\.0\.0\.7\)"):
        check("https://rebind.example.org/")
    with pytest.raises(URLBlocked, match="private"):
        check("http://wiki.corp.example/")


def test_unresolvable_host_is_a_fetch_error_not_a_block(resolver: dict[str, list[str]]) -> None:
    with pytest.raises(FetchError, match=r"could not resolve nowhere\.example") as caught:
        check("https://nowhere.example/")
    assert not isinstance(caught.value, URLBlocked)


@pytest.mark.parametrize("url", ["http://[::1", "http://", "not a url at all"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(URLBlocked):
        check(url)


def test_blocked_reason() -> None:
    assert blocked_reason(ipaddress.ip_address("8.8.8.8")) is None
    assert blocked_reason(ipaddress.ip_address("2001:4860:4860::8888")) is None
    assert blocked_reason(ipaddress.ip_address("192.0.2.1")) is not None  # documentation range
    assert blocked_reason(ipaddress.ip_address("::ffff:8.8.8.8")) is None


# --- the allowlist


def check_with(url: str, *entries: str) -> bool:
    return asyncio.run(check_url(url, allowlist=Allowlist.parse(entries)))


def test_allowlist_parses_hosts_addresses_and_ranges() -> None:
    allowlist = Allowlist.parse(
        [" Wiki.Corp.Example. ", "127.0.0.1", "10.20.0.0/16", "::1", "[fd00::]/8", "", "bücher.example"]
    )
    assert allowlist.hosts == frozenset({"wiki.corp.example", "xn--bcher-kva.example"})
    assert [str(n) for n in allowlist.networks] == ["127.0.0.1/32", "10.20.0.0/16", "::1/128", "fd00::/8"]
    assert allowlist and not Allowlist.parse([])
    for bad in ("http://wiki.corp.example/", "wiki.corp.example:8080", "10.0.0.0/33", "a b", "wiki/path"):
        with pytest.raises(ValueError, match="allowlist entry"):
            Allowlist.parse([bad])


def test_an_allowlisted_address_passes_while_other_private_ones_stay_refused() -> None:
    assert check_with("http://127.0.0.1:8000/", "127.0.0.1") is True  # passed by exemption
    with pytest.raises(URLBlocked, match=r"10\.0\.0\.1 is a private address"):
        check_with("http://10.0.0.1/", "127.0.0.1")
    with pytest.raises(URLBlocked, match="loopback"):
        check_with("http://127.0.0.2/", "127.0.0.1")
    assert check_with("http://93.184.215.14/", "127.0.0.1") is False  # public on its own merits
    assert check_with("http://93.184.215.14/") is False


def test_allowlist_cidr_ranges() -> None:
    assert check_with("http://10.20.3.4/wiki", "10.20.0.0/16")
    assert check_with("http://10.20.255.255/", "10.20.0.0/16")
    for outside in ("http://10.21.0.1/", "http://10.19.255.255/", "http://169.254.169.254/"):
        with pytest.raises(URLBlocked):
            check_with(outside, "10.20.0.0/16")


def test_allowlist_ipv6_literals() -> None:
    assert check_with("http://[::1]:8080/", "::1")
    assert check_with("http://[::1]/", "[::1]")
    assert check_with("http://[fd12:3456::1]/", "fd00::/8")
    assert check_with("http://[::ffff:127.0.0.1]/", "127.0.0.1")  # the IPv4 inside counts
    with pytest.raises(URLBlocked, match="loopback"):
        check_with("http://[::1]/", "127.0.0.1")
    with pytest.raises(URLBlocked, match="private"):
        check_with("http://[fc00::1]/", "fd00::/8")


def test_allowlisted_host_names(resolver: dict[str, list[str]]) -> None:
    resolver["wiki.corp.example"] = ["10.1.2.3"]
    resolver["other.corp.example"] = ["10.1.2.3"]
    resolver["localhost"] = ["127.0.0.1"]
    resolver["metadata.google.internal"] = ["169.254.169.254"]
    assert check_with("https://wiki.corp.example/page", "wiki.corp.example")
    assert check_with("https://WIKI.corp.example./page", "wiki.corp.example")
    with pytest.raises(URLBlocked, match=r"other\.corp\.example is a private address"):
        check_with("https://other.corp.example/", "wiki.corp.example")
    # By address: any name resolving only into the listed range passes.
    assert check_with("https://other.corp.example/", "10.0.0.0/8")
    # A special-use name passes when all its addresses are listed, or when the name itself is.
    assert check_with("http://localhost:8080/", "127.0.0.0/8")
    assert check_with("http://localhost:8080/", "localhost")
    with pytest.raises(URLBlocked, match="names this machine or a private network"):
        check_with("http://metadata.google.internal/", "10.0.0.0/8")
    with pytest.raises(URLBlocked, match="non-standard numeric"):
        check_with("http://127.1/", "127.0.0.0/8")


def test_allow_private_still_allows_everything_private() -> None:
    assert asyncio.run(check_url("http://10.9.8.7/", allow_private=True)) is True
    assert (
        asyncio.run(check_url("http://169.254.169.254/", allow_private=True, allowlist=Allowlist())) is True
    )
    with pytest.raises(URLBlocked, match="only http and https"):
        asyncio.run(check_url("file:///etc/passwd", allow_private=True, allowlist=Allowlist.parse(["::1"])))


def test_vet_url_keeps_the_addresses_it_checked_for_the_connection() -> None:
    lookups: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[Any]:
        lookups.append((host, port))
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("93.184.215.14")]

    vetted = asyncio.run(vet_url("https://Docs.Example.org./guide", resolver=resolver))
    assert (vetted.host, vetted.port, vetted.exempted) == ("docs.example.org", 443, False)
    assert vetted.addresses == (ipaddress.ip_address("93.184.215.14"),)  # once each, in order
    assert lookups == [("docs.example.org", 443)]
    literal = asyncio.run(vet_url("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8080/", resolver=resolver))
    assert literal.host == "2606:2800:21f:cb07:6820:80da:af6b:8b2c" and literal.port == 8080
    # exempt hosts may be reached at any address: nothing to pin, nothing resolved
    assert asyncio.run(vet_url("http://intranet/", allow_private=True, resolver=resolver)).addresses is None
    wiki = Allowlist.parse(["wiki.corp.example"])
    assert (
        asyncio.run(vet_url("http://wiki.corp.example/", allowlist=wiki, resolver=resolver)).addresses is None
    )
    assert len(lookups) == 1
