"""Sets of IP networks, matched fast: trusted proxies (http1/forwarding.py) and a frontend's
source lists (routing/access.py)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable


class Networks:
    """A set of IP networks, as (network, mask) integers: a lookup is one `inet_pton` and a
    few ANDs. Entries were checked by main (`address.parse_network`)."""

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: Iterable[str]) -> None:
        self._v4: list[tuple[int, int]] = []
        self._v6: list[tuple[int, int]] = []
        for text in networks:
            network = ipaddress.ip_network(text, strict=False)
            table = self._v4 if network.version == 4 else self._v6
            table.append((int(network.network_address), int(network.netmask)))

    def __contains__(self, ip: str) -> bool:
        """`ip` in text form, IPv4-mapped IPv6 unwrapped, no scope; unreadable: False."""
        if ":" in ip:
            family, table = socket.AF_INET6, self._v6
        else:
            family, table = socket.AF_INET, self._v4
        try:
            value = int.from_bytes(socket.inet_pton(family, ip), "big")
        except OSError:
            return False
        return any(value & mask == network for network, mask in table)
