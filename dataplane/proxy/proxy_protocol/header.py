"""The PROXY protocol header a load balancer puts before a client's bytes, read sans-IO.

`parse_header(data)` looks at the bytes a connection has received so far and answers: a
`ProxyHeader` (complete: how many bytes it takes and the client address it carries), None
(a valid beginning, more bytes needed), or `ProxyProtocolError` (not a PROXY header, or a
malformed or oversized one). It never reads past the header's last byte, so the bytes after
it (an HTTP request, a TLS ClientHello) are left where they are.

Both versions of HAProxy's specification (proxy-protocol.txt) are read:

- v2 (binary, what sozu reads): 12-byte signature, version 2 with command LOCAL (0x20) or
  PROXY (0x21), family/transport, 16-bit length, then the addresses and TLVs. TCP4/UDP4 and
  TCP6/UDP6 carry a source; UNSPEC and UNIX carry none (the connection's own peer is used, as
  the specification asks of receivers that do not support a family). A LOCAL header (the load
  balancer's own health check) carries none whatever its address block says. TLVs are
  skipped unread. Headers above `MAX_V2_HEADER` bytes are refused.
- v1 (text, a pysozu extension: many load balancers send only this one):
  `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`, or `PROXY UNKNOWN...\r\n` (no source),
  at most 107 bytes. Addresses must be canonical for their family; ports 0-65535 in decimal.

Addresses come back in the text form the kernel gives `accept()` (`inet_ntop`), so nothing
downstream can tell a proxied address from a peer's.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TypeAlias, Union

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_HEADER = 107  # the specification's bound, CRLF included
V2_FIXED = 16  # signature, version/command, family, length
# sozu refuses v2 headers above 232 bytes; TLVs (AWS, Azure, GCP ids, HAProxy's SSL and
# authority ones) can legitimately be longer, so pysozu allows 1 KiB per pending connection.
MAX_V2_HEADER = 1024
MAX_HEADER = MAX_V2_HEADER  # what a reader ever needs to look at

LOCAL = 0x20
PROXY = 0x21
# family/transport byte -> (address block length, socket family or None for no address)
_V2_FAMILIES: dict[int, tuple[int, int | None]] = {
    0x00: (0, None),  # UNSPEC
    0x11: (12, socket.AF_INET),  # TCP over IPv4
    0x12: (12, socket.AF_INET),  # UDP over IPv4
    0x21: (36, socket.AF_INET6),  # TCP over IPv6
    0x22: (36, socket.AF_INET6),  # UDP over IPv6
    0x31: (216, None),  # UNIX stream: no IP address to use
    0x32: (216, None),  # UNIX datagram
}

_PORT = rb"(0|[1-9][0-9]{0,4})"
_V1_LINE = re.compile(
    rb"PROXY (?:(TCP4|TCP6) ([0-9a-fA-F.:]+) ([0-9a-fA-F.:]+) "
    + _PORT
    + b" "
    + _PORT
    + rb"|UNKNOWN(?: [\x20-\x7e]*)?)\r\n"
)


class ProxiedPeer(tuple[str, int]):
    """A client's (ip, port) read from a PROXY header; `public`: the (ip, port) the client
    connected to (the header's destination), which stands for the listener's address."""

    public: tuple[str, int] | None = None


# A connection's client address as sessions and listeners take it. Spelled as a union, not as
# `tuple[str, int]`: mypyc passes a `tuple[str, int]` unboxed (its two items), which drops a
# ProxiedPeer's `public` on the way from the PROXY header to the session in compiled code.
Peer: TypeAlias = Union[tuple[str, int], ProxiedPeer]  # noqa: UP007 (mypyc boxes a Union)


class ProxyProtocolError(ValueError):
    """Not a PROXY protocol header, or a malformed or oversized one: close the connection."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete header: `length` bytes on the wire; `source` is the client's (ip, port),
    None when the header carries no address to use (LOCAL, UNSPEC, UNIX, v1 UNKNOWN)."""

    length: int
    version: int
    local: bool  # the LOCAL command: a connection the load balancer made itself
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None

    def peer(self, real: tuple[str, int]) -> tuple[str, int]:
        """The client address a connection gets: the source, else its `real` peer."""
        if self.source is None:
            return real
        peer = ProxiedPeer(self.source)
        peer.public = self.destination
        return peer


def parse_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`, None if more bytes are needed (ProxyProtocolError)."""
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if not data:
        return None
    raise ProxyProtocolError("no PROXY protocol header")


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V2_SIGNATURE):
        if V2_SIGNATURE.startswith(data[:12]):
            return None  # a beginning of the signature
        raise ProxyProtocolError("no PROXY protocol header")
    if len(data) < V2_FIXED:
        if len(data) > 12 and data[12] not in (LOCAL, PROXY):
            raise ProxyProtocolError(f"v2: bad version/command byte {data[12]:#04x}")
        if len(data) > 13 and data[13] not in _V2_FAMILIES:
            raise ProxyProtocolError(f"v2: bad family/transport byte {data[13]:#04x}")
        return None
    command, family = data[12], data[13]
    if command not in (LOCAL, PROXY):
        raise ProxyProtocolError(f"v2: bad version/command byte {command:#04x}")
    known = _V2_FAMILIES.get(family)
    if known is None:
        raise ProxyProtocolError(f"v2: bad family/transport byte {family:#04x}")
    size, address_family = known
    length = V2_FIXED + int.from_bytes(data[14:16], "big")
    if length > MAX_V2_HEADER:
        raise ProxyProtocolError(f"v2: header of {length} bytes, above {MAX_V2_HEADER}")
    if length - V2_FIXED < size:
        raise ProxyProtocolError(f"v2: {length - V2_FIXED} address bytes, family needs {size}")
    if len(data) < length:
        return None
    if command == LOCAL or address_family is None:
        return ProxyHeader(length, 2, command == LOCAL)
    half = (size - 4) // 2
    block = data[V2_FIXED : V2_FIXED + size]
    source = socket.inet_ntop(address_family, block[:half])
    destination = socket.inet_ntop(address_family, block[half : 2 * half])
    ports = block[2 * half :]
    return ProxyHeader(
        length,
        2,
        False,
        (source, int.from_bytes(ports[:2], "big")),
        (destination, int.from_bytes(ports[2:], "big")),
    )


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX_HEADER)
    if end < 0:
        if not data.startswith(V1_PREFIX) and not V1_PREFIX.startswith(data[:6]):
            raise ProxyProtocolError("no PROXY protocol header")
        if len(data) >= V1_MAX_HEADER:
            raise ProxyProtocolError(f"v1: no CRLF in the first {V1_MAX_HEADER} bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise ProxyProtocolError("v1: stray CR or LF")
        return None
    length = end + 2
    match = _V1_LINE.fullmatch(data, 0, length)
    if match is None:
        raise ProxyProtocolError(f"v1: malformed header {bytes(data[:length])!r}")
    proto = match[1]
    if proto is None:
        return ProxyHeader(length, 1, False)  # UNKNOWN: the connection's own peer
    version = 4 if proto == b"TCP4" else 6
    source = (_v1_address(match[2], version), int(match[4]))
    destination = (_v1_address(match[3], version), int(match[5]))
    if source[1] > 65535 or destination[1] > 65535:
        raise ProxyProtocolError("v1: port above 65535")
    return ProxyHeader(length, 1, False, source, destination)


def _v1_address(text: bytes, version: int) -> str:
    try:
        address = ipaddress.ip_address(text.decode("ascii"))
    except ValueError:
        raise ProxyProtocolError(f"v1: bad address {text!r}") from None
    if address.version != version:
        raise ProxyProtocolError(f"v1: {text!r} is not an IPv{version} address")
    return socket.inet_ntop(socket.AF_INET if version == 4 else socket.AF_INET6, address.packed)


def v2_header(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None = None,
    local: bool = False,
    tlvs: bytes = b"",
    family: int | None = None,
) -> bytes:
    """A v2 header (for tests and tools): TCP4/TCP6 from the addresses, UNSPEC without."""
    if source is None or destination is None:
        block, fam = b"", 0x00
    else:
        inet = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
        block = (
            socket.inet_pton(inet, source[0])
            + socket.inet_pton(inet, destination[0])
            + source[1].to_bytes(2, "big")
            + destination[1].to_bytes(2, "big")
        )
        fam = 0x21 if inet == socket.AF_INET6 else 0x11
    if family is not None:
        fam = family
    body = block + tlvs
    command = LOCAL if local else PROXY
    return V2_SIGNATURE + bytes((command, fam)) + len(body).to_bytes(2, "big") + body
