"""Outbound calls to URLs a user chose: only http(s), and never to link-local or cloud-metadata
addresses, whatever the name resolves to. URLs a tenant chose (a remote storageUri) must moreover lead
to a public address: not loopback, private, shared, reserved or this host in any spelling (`127.1`,
`0x7f.1`, `2130706433` and `[::1]` all resolve to loopback, and are judged by what they resolve to).

What is checked is what the name resolves to now; a name that later resolves elsewhere (DNS rebinding)
is outside this guard, which is one reason the admin alone may name arbitrary endpoints."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "metadata.azure.internal", "instance-data"}
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


class OutboundRefused(ValueError):
    """The URL may not be called; the message says why."""


def check_url(url: str, *, public_only: bool = False) -> str:
    """Return the URL when it may be called, else raise OutboundRefused. `public_only`: the URL is a
    tenant's, and must resolve to public (globally routable) addresses only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise OutboundRefused("only http and https URLs may be called")
    host = parts.hostname
    if not host:
        raise OutboundRefused("the URL has no host")
    if parts.username or parts.password:
        raise OutboundRefused("URLs with credentials are not allowed")
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise OutboundRefused(f"{host} is a cloud metadata service")
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror:
        raise OutboundRefused(f"{host} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address in METADATA_ADDRESSES:
            raise OutboundRefused(f"{host} resolves to a cloud metadata address")
        if address.is_link_local:
            raise OutboundRefused(f"{host} resolves to a link-local address")
        if address.is_multicast or address.is_unspecified:
            raise OutboundRefused(f"{host} resolves to an address that cannot be called")
        if public_only and address.is_loopback:
            raise OutboundRefused(f"{host} resolves to a loopback address")
        if public_only and not address.is_global:
            raise OutboundRefused(f"{host} resolves to a private or reserved address")
    return url
