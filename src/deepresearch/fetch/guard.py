"""Refuse URLs that would make the agent fetch from the machine's own network (SSRF).

The model chooses which URLs to open, and the pages it reads can steer it, so a URL is untrusted
input. Before every request — the first one and every redirect hop — the fetcher asks
``check_url``: only http(s), and (unless private addresses are allowed) a host whose every resolved
address is public. Loopback, private, link-local (cloud metadata at 169.254.169.254), CGNAT,
multicast, reserved and unspecified addresses are refused, as are the same addresses wrapped in
IPv6 (IPv4-mapped, 6to4, NAT64) and names such as ``localhost`` that never mean a public site.

Two ways to open the fence: ``allow_private`` lets every address through (tests, a trusted intranet),
and an ``Allowlist`` names exactly which hosts, addresses or CIDR ranges may be private — so a user
can reach one intranet wiki without opening the cloud metadata address too. ``check_url`` says
whether a URL passed only thanks to one of these exemptions, so the fetch cache can check such pages
again before it serves them under a stricter configuration.

The URL is parsed with httpx, the same parser the client uses, so the host checked is the host
contacted. A name is resolved once, by the ``Resolver`` the caller passes (the system's by default),
and ``vet_url`` returns the addresses it checked: the fetcher connects to exactly those (``http.py``),
so a DNS server that answers a public address to the check and a private one to a second lookup (DNS
rebinding) is never asked twice.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

from deepresearch.errors import FetchError, URLBlocked

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
BLOCKED_HOSTNAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
"""Special-use or intranet-only name suffixes (``metadata.google.internal`` among them)."""

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Host name and port → its addresses; raises ``OSError`` (or returns none) when the name does not resolve."""

_HOST_NAME_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Hosts (exact names) and address ranges that may be contacted even though they are private."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Read ``wiki.corp.example``, ``10.1.2.3``, ``10.0.0.0/8``, ``::1`` or ``[fd00::]/8`` entries.

        Raises ``ValueError`` naming the first entry that is none of these (a port or a URL, say).
        """
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            literal = entry.replace("[", "").replace("]", "")
            try:
                networks.append(ipaddress.ip_network(literal, strict=False))
                continue
            except ValueError:
                pass
            try:
                name = entry.rstrip(".").encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise ValueError(f"allowlist entry {raw!r} is not a valid host name: {exc}") from exc
            if not _HOST_NAME_RE.match(name):
                raise ValueError(
                    f"allowlist entry {raw!r} is not a host name, an IP address or a CIDR range "
                    "(no scheme, port or path)"
                )
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.hosts or self.networks)

    def allows_host(self, host: str) -> bool:
        """Whether the host name itself is listed (then whatever it resolves to is accepted)."""
        return host in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address``, or the IPv4 address wrapped inside it, lies in a listed range."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


@dataclass(frozen=True, slots=True)
class Vetted:
    """What the guard decided about one host: where a connection to it may go."""

    host: str
    """Lower case, without a trailing dot or IPv6 brackets."""
    port: int
    exempted: bool
    """Passed only through ``allow_private`` or the allowlist (see ``check_url``)."""
    addresses: tuple[IPAddress, ...] | None
    """The checked addresses, the only ones to connect to; ``None`` when the host may be reached at any
    address (``allow_private``, or a host name on the allowlist)."""


async def check_url(
    url: str,
    *,
    allow_private: bool = False,
    allowlist: Allowlist | None = None,
    resolver: Resolver | None = None,
) -> bool:
    """Raise ``URLBlocked`` unless ``url`` is http(s) and public, allowed private, or allowlisted.

    Returns ``True`` when the URL passed only through an exemption (``allow_private``, or a private
    address or name in ``allowlist``), ``False`` when it is public on its own merits.
    """
    vetted = await vet_url(url, allow_private=allow_private, allowlist=allowlist, resolver=resolver)
    return vetted.exempted


async def vet_url(
    url: str,
    *,
    allow_private: bool = False,
    allowlist: Allowlist | None = None,
    resolver: Resolver | None = None,
) -> Vetted:
    """``check_url``, keeping the addresses checked so that the connection can be pinned to them."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise URLBlocked(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        scheme = parsed.scheme or "no scheme"
        raise URLBlocked(f"refused {url}: only http and https URLs can be fetched ({scheme} given)")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return await vet_host(
        parsed.raw_host.decode("ascii"),
        port,
        target=url,
        allow_private=allow_private,
        allowlist=allowlist,
        resolver=resolver,
    )


async def vet_host(
    host: str,
    port: int,
    *,
    target: str,
    allow_private: bool = False,
    allowlist: Allowlist | None = None,
    resolver: Resolver | None = None,
) -> Vetted:
    """Resolve ``host`` once and check every address; ``target`` (the URL) names it in errors."""
    host = host.rstrip(".").lower()
    if not host:
        raise URLBlocked(f"refused {target}: the URL has no host")
    if allow_private:
        return Vetted(host.strip("[]"), port, True, None)
    allowlist = allowlist or Allowlist()
    if allowlist.allows_host(host):
        return Vetted(host, port, True, None)
    literal = _ip_literal(host.strip("[]"))
    if literal is not None:
        addresses = [literal]
    else:
        name_problem = _hostname_problem(host)
        if name_problem is not None and (not allowlist.networks or "numeric" in name_problem):
            raise URLBlocked(f"refused {target}: {host} {name_problem}")
        addresses = await _resolve(host, port, target, resolver or system_resolver)
        # A special-use name ("localhost", "*.internal") passes only when all its addresses are listed.
        if name_problem is not None and not all(allowlist.allows_address(a) for a in addresses):
            raise URLBlocked(f"refused {target}: {host} {name_problem}")
    exempted = False
    for address in addresses:
        reason = blocked_reason(address)
        if reason is None:
            continue
        if not allowlist.allows_address(address):
            raise URLBlocked(f"refused {target}: {host} is {reason} ({address})")
        exempted = True
    return Vetted(host.strip("[]"), port, exempted, tuple(addresses))


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


def _hostname_problem(host: str) -> str | None:
    """Why a host name is refused before it is even resolved, or ``None``."""
    # No top-level domain is numeric: "127.1", "2130706433" or "0x7f.1" are IPv4 shorthands that the
    # resolver would quietly turn into addresses; refuse them rather than guess.
    last_label = host.rsplit(".", 1)[-1]
    if last_label.isdigit() or last_label.startswith("0x"):
        return "is a non-standard numeric address"
    if host in BLOCKED_HOSTNAMES or host.endswith(BLOCKED_SUFFIXES):
        return "names this machine or a private network"
    return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The operating system's answer for ``host`` (``getaddrinfo`` in a thread)."""
    infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # IPv6 socket addresses may carry a zone ("fe80::1%eth0"); the address part decides.
        address = _ip_literal(str(sockaddr[0]).split("%", 1)[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses


async def _resolve(host: str, port: int, url: str, resolver: Resolver) -> list[IPAddress]:
    try:
        addresses = list(dict.fromkeys(await resolver(host, port)))
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"could not resolve {host} for {url}: {exc}") from exc
    if not addresses:
        raise FetchError(f"could not resolve {host} for {url}: no addresses")
    logger.debug("resolved %s to %s", host, ", ".join(map(str, addresses)))
    return addresses
