"""Refuse URLs that would make the agent fetch from the machine's own network (SSRF).

The model chooses which URLs to open, and the pages it reads can steer it, so a URL is untrusted
input. Before every request — the first one and every redirect hop — the fetcher asks
``check_url``: only http(s), and (unless private addresses are allowed) a host whose every resolved
address is public. Loopback, private, link-local (cloud metadata at 169.254.169.254), CGNAT,
multicast, reserved and unspecified addresses are refused, as are the same addresses wrapped in
IPv6 (IPv4-mapped, 6to4, NAT64) and names such as ``localhost`` that never mean a public site.

The URL is parsed with httpx, the same parser the client uses, so the host checked is the host
contacted. Known limit: the client resolves the name again when it connects, so a DNS server that
answers differently the second time (DNS rebinding) is not stopped here; pinning the checked address
in the transport is the fix when that matters.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

import httpx

from deepresearch.errors import FetchError, URLBlocked

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
BLOCKED_HOSTNAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
"""Special-use or intranet-only name suffixes (``metadata.google.internal`` among them)."""

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise ``URLBlocked`` unless ``url`` is http(s) and (without ``allow_private``) public."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise URLBlocked(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        scheme = parsed.scheme or "no scheme"
        raise URLBlocked(f"refused {url}: only http and https URLs can be fetched ({scheme} given)")
    host = parsed.raw_host.decode("ascii").rstrip(".").lower()
    if not host:
        raise URLBlocked(f"refused {url}: the URL has no host")
    if allow_private:
        return
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        _check_hostname(host, url)
        addresses = await _resolve(host, parsed.port, url)
    for address in addresses:
        reason = blocked_reason(address)
        if reason is not None:
            raise URLBlocked(f"refused {url}: {host} is {reason} ({address})")


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be contacted, or ``None`` when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"{inner} inside IPv6" if inner else None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives here)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "not a public address"
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_hostname(host: str, url: str) -> None:
    if host in BLOCKED_HOSTNAMES or host.endswith(BLOCKED_SUFFIXES):
        raise URLBlocked(f"refused {url}: {host} names this machine or a private network")
    # No top-level domain is numeric: "127.1", "2130706433" or "0x7f.1" are IPv4 shorthands that the
    # resolver would quietly turn into addresses; refuse them rather than guess.
    last_label = host.rsplit(".", 1)[-1]
    if last_label.isdigit() or last_label.startswith("0x"):
        raise URLBlocked(f"refused {url}: {host} is a non-standard numeric address")


async def _resolve(host: str, port: int | None, url: str) -> list[IPAddress]:
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"could not resolve {host} for {url}: {exc}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # IPv6 socket addresses may carry a zone ("fe80::1%eth0"); the address part decides.
        address = _ip_literal(str(sockaddr[0]).split("%", 1)[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"could not resolve {host} for {url}: no addresses")
    logger.debug("resolved %s to %s", host, ", ".join(map(str, addresses)))
    return addresses
