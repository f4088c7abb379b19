"""Where webhooks may go: an egress policy checked on the resolved address at delivery time.

A tenant chooses the URL, so without a policy webhooks reach whatever the gateway can: cloud
metadata services, the node's own admin ports, the private network. Link-local and metadata
addresses are always refused; loopback and private ranges only where the operator allows them
(`webhook_allow_loopback`, `webhook_allow_private`). The host is resolved once per delivery,
every address it resolves to is checked, and the request is sent to the checked address (with
the original `Host` header and TLS server name), so a DNS answer that changes between the check
and the connect (DNS rebinding) cannot move the delivery elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx

from coldbrew.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Refused whatever the settings: link-local ranges (where cloud metadata services answer) and
#: the metadata addresses that are outside them.
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata 169.254.169.254
        "fe80::/10",  # IPv6 link-local
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "168.63.129.16/32",  # Azure's host endpoint (WireServer)
        "0.0.0.0/8",  # "this network": reaches the local host on Linux
    )
)
REFUSED = "refused by policy"


class EgressRefused(Exception):
    """The webhook's target is not allowed; the message says why (no connect details)."""


@dataclass(frozen=True)
class Target:
    """Where one delivery connects: the checked address, with the original name kept for the
    `Host` header and TLS."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses webhooks may reach."""

    allow_loopback: bool = False
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        """Loopback is allowed by default only on a gateway that itself listens on loopback
        (the embedded, single-machine default), where its receivers are local too."""
        loopback = settings.webhook_allow_loopback
        if loopback is None:
            loopback = _is_loopback_host(settings.host)
        return cls(allow_loopback=loopback, allow_private=settings.webhook_allow_private)

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be reached, or None when it may."""
        if isinstance(address, ipaddress.IPv6Address):
            # an IPv4 address inside: mapped (::ffff:a.b.c.d), or 6to4 (2002:aabb:ccdd::),
            # which a host with a 6to4 tunnel sends to that IPv4 address
            embedded = address.ipv4_mapped or address.sixtofour
            if embedded is not None:
                address = embedded
        if any(address in net for net in ALWAYS_REFUSED) or address.is_link_local:
            return "a link-local or cloud metadata address"
        if address.is_loopback:
            return None if self.allow_loopback else "a loopback address"
        if address.is_multicast or address.is_unspecified or address.is_reserved:
            return "not a unicast address"
        if address.is_private or not address.is_global:
            return None if self.allow_private else "a private address"
        return None

    async def target(self, url: str) -> Target:
        """Resolve and check `url`'s host; raise `EgressRefused` unless every address passes."""
        parsed = httpx.URL(url)
        host = parsed.host
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = await _resolve(host, port)
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                setting = (
                    "COLDBREW_WEBHOOK_ALLOW_LOOPBACK"
                    if reason == "a loopback address"
                    else "COLDBREW_WEBHOOK_ALLOW_PRIVATE"
                )
                allowed = "" if reason.startswith(("a link", "not")) else f" ({setting} allows it)"
                raise EgressRefused(f"{REFUSED}: {host} is {reason}{allowed}")
        chosen = addresses[0]
        headers = {"host": parsed.netloc.decode("ascii")}
        extensions: dict[str, Any] = {}
        if parsed.scheme == "https":
            extensions["sni_hostname"] = host
        return Target(parsed.copy_with(host=str(chosen)), headers, extensions)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise EgressRefused(f"could not resolve the receiver's host {host!r}") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise EgressRefused(f"could not resolve the receiver's host {host!r}")
    return found
