"""The client's address: the peer, or ``X-Forwarded-For`` when the peer is a trusted proxy.

Each proxy appends the address it received from, so the header is only as
trustworthy as the hop that wrote each entry: walk it from the right, past our
own proxies, and take the first address that is not one of them (RFC 7239 §7.4
gives the same advice for ``Forwarded``). A left-most entry is whatever the
client chose to send and is never believed on its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(addr: Address, proxies: Sequence[Network]) -> bool:
    return any(addr in net for net in proxies)


def client_address(request: web.Request, proxies: Sequence[Network]) -> str | None:
    peer = _parse(request.remote or "")
    if peer is None:
        return request.remote
    if not _trusted(peer, proxies):
        return str(peer)
    hops = [h for line in request.headers.getall("X-Forwarded-For", []) for h in line.split(",")]
    client = peer
    for hop in reversed(hops):
        addr = _parse(hop)
        if addr is None:
            # A malformed entry: everything left of it is unverifiable.
            break
        client = addr
        if not _trusted(addr, proxies):
            break
    return str(client)
