"""Socket addresses as the command protocol carries them.

In Python an address is a `SocketAddress` (an `ipaddress` object and a port) that prints as
`127.0.0.1:8080` or `[::1]:8080`. On the wire it is sozu's JSON shape,
`{"ip": {"inner": {"V4": <u32>}}, "port": 8080}` (IPv6: `{"V6": {"low": u64, "high": u64}}`),
so that state files written by sozu load here and ours load there. Decoding also accepts the
plain `"host:port"` string, which is what people type.
"""

from __future__ import annotations

import ipaddress
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_U64 = (1 << 64) - 1


class SocketAddress:
    """An IP address and a port; immutable, hashable, ordered."""

    __slots__ = ("_key", "ip", "port")

    ip: IPAddress
    port: int
    _key: tuple[int, int, int]

    def __init__(self, ip: IPAddress | str, port: int) -> None:
        parsed = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        object.__setattr__(self, "ip", parsed)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "_key", (parsed.version, int(parsed), port))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SocketAddress is immutable")

    @classmethod
    def parse(cls, text: str) -> SocketAddress:
        """Parse `1.2.3.4:80`, `[::1]:80` or `localhost:80` (localhost means 127.0.0.1)."""
        text = text.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"invalid socket address {text!r}: expected [ipv6]:port")
        else:
            host, sep, port = text.rpartition(":")
            if not sep or ":" in host:
                raise ValueError(f"invalid socket address {text!r}: expected ip:port")
        if host == "localhost":
            host = "127.0.0.1"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"invalid socket address {text!r}: {host!r} is not an IP") from None
        if not port.isdigit():
            raise ValueError(f"invalid socket address {text!r}: port {port!r} is not a number")
        return cls(ip, int(port))

    def to_wire(self) -> dict[str, Any]:
        if isinstance(self.ip, ipaddress.IPv4Address):
            inner: dict[str, Any] = {"V4": int(self.ip)}
        else:
            value = int(self.ip)
            inner = {"V6": {"low": value & _U64, "high": value >> 64}}
        return {"ip": {"inner": inner}, "port": self.port}

    @classmethod
    def from_wire(cls, obj: Any) -> SocketAddress:
        if isinstance(obj, str):
            return cls.parse(obj)
        if not isinstance(obj, dict) or set(obj) != {"ip", "port"}:
            raise ValueError("expected an address string or {ip, port}")
        inner = obj["ip"].get("inner") if isinstance(obj["ip"], dict) else None
        if not isinstance(inner, dict) or len(inner) != 1:
            raise ValueError("expected ip.inner with one of V4 or V6")
        ((kind, value),) = inner.items()
        ip: IPAddress
        if kind in ("V4", "v4") and isinstance(value, int) and 0 <= value < 1 << 32:
            ip = ipaddress.IPv4Address(value)
        elif kind in ("V6", "v6") and isinstance(value, dict):
            low, high = value.get("low"), value.get("high")
            if not (isinstance(low, int) and isinstance(high, int)):
                raise ValueError("V6 needs integer low and high")
            if not (0 <= low <= _U64 and 0 <= high <= _U64):
                raise ValueError("V6 low and high must be u64")
            ip = ipaddress.IPv6Address((high << 64) | low)
        else:
            raise ValueError(f"invalid ip.inner {inner!r}")
        port = obj["port"]
        if not isinstance(port, int):
            raise ValueError("port must be an integer")
        return cls(ip, port)

    @property
    def family_host(self) -> str:
        return str(self.ip)

    def sockaddr(self) -> tuple[str, int]:
        return (str(self.ip), self.port)

    def __str__(self) -> str:
        if self.ip.version == 6:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"

    def __repr__(self) -> str:
        return f"SocketAddress({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SocketAddress) and self._key == other._key

    def __lt__(self, other: SocketAddress) -> bool:
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SocketAddress.parse, (str(self),))


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_network(text: str) -> IPNetwork:
    """A `trusted_proxies` entry: `10.0.0.0/8`, `2001:db8::/32`, or one address (a /32 or
    /128). ValueError, saying why, for anything else: host bits set under the prefix are an
    error rather than silently masked (`10.0.0.1/8` trusts far more than one address), and
    an IPv4-mapped IPv6 network is written as IPv4, since peers are matched unwrapped."""
    if not isinstance(text, str) or text != text.strip() or not text:
        raise ValueError(f"{text!r} is not an IP network (CIDR such as 10.0.0.0/8)")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP network (CIDR such as 10.0.0.0/8)") from None
    try:
        ipaddress.ip_network(text)
    except ValueError:
        raise ValueError(
            f"{text!r} has bits set after its prefix length: write {network} (or the one "
            "address alone)"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        raise ValueError(f"{text!r} is IPv4-mapped: write it as IPv4, peers are matched so")
    return network
