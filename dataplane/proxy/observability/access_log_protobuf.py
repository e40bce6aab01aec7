"""sozu's binary access logs: one `ProtobufAccessLog` per request, byte for byte as prost writes it.

A record is the message preceded by its length as a varint and followed by two zero bytes (what
sozu writes to its target). The message's fields are written in field-number order; required
fields always, optional ones only when known; what pysozu does not measure (client_rtt,
server_rtt, otel, x_request_id, tls_*, xff_chain, start_time) is left out.

128-bit values travel as sozu's `Uint128 {low = 1, high = 2}`, filled the way sozu fills them:
- a number (the time in POSIX nanoseconds, an IPv6 address): `low` = bottom 64 bits;
- a ULID (request and session ids): sozu's ULID crate (rusty_ulid) splits it as (top 64 bits,
  bottom 64) into (low, high), so `low` holds the TOP half there.

As for the text formats, what a connection's requests share is encoded once (`fixed`) and a
request only adds what changes (`line`).
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable

from dataplane.proxy.observability.access_log_format import AccessRecord, Fixed, Formatter

_U64 = (1 << 64) - 1
# int(text, 32) reads 0-9A-V; Crockford's base 32 (ULIDs) skips I, L, O and U. Every other ASCII
# character becomes "!", which int() refuses, so a malformed id is never silently misread.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE32 = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_FROM_CROCKFORD = str.maketrans(
    {chr(c): "!" for c in range(128)}
    | dict(zip(_CROCKFORD, _BASE32, strict=True))
    | dict(zip(_CROCKFORD.lower(), _BASE32, strict=True))
)

# The value of each pair of ULID characters, to read the last four (bits 19-0) without int().
_PAIRS = {
    (a + b).encode(): i << 5 | j for i, a in enumerate(_CROCKFORD) for j, b in enumerate(_CROCKFORD)
}

# Keys of the fields `line` writes, as (field number << 3 | wire type) varints.
_REQUEST_ID = b"\x12"  # 2, message
_HTTP = b"\x0a"  # ProtobufEndpoint.http = 1, message
_STATUS = b"\x20"  # HttpEndpoint.status = 4, varint
_TIME = b"\x9a\x01"  # 19, message
_RESPONSE_TIME = b"\xa8\x01"  # 21, varint
_TRAILER = b"\0\0"  # sozu's two zero bytes after each record


# Every one- and two-byte varint, ready made (1.3 MB, only in workers logging in protobuf).
_SMALL = 1 << 14
_VARINTS = tuple(bytes((n,)) for n in range(0x80)) + tuple(
    bytes((n & 0x7F | 0x80, n >> 7)) for n in range(0x80, _SMALL)
)


def varint(n: int) -> bytes:
    """An unsigned varint (ValueError for a negative number)."""
    if 0 <= n < _SMALL:
        return _VARINTS[n]
    if n < 0:
        raise ValueError(f"a varint cannot hold {n}")
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    """A field's key (sozu's field numbers are all far below 2048: one or two bytes)."""
    return _VARINTS[field << 3 | wire_type]


def delimited(field: int, payload: bytes) -> bytes:
    """A length-delimited field: a string's UTF-8 bytes or a nested message."""
    size = len(payload)
    return _VARINTS[field << 3 | 2] + (_VARINTS[size] if size < _SMALL else varint(size)) + payload


def text(field: int, value: str) -> bytes:
    return delimited(field, value.encode("utf-8", "replace"))


def uint(field: int, value: int) -> bytes:
    return key(field, 0) + varint(value)


def uint128(low: int, high: int) -> bytes:
    """A `Uint128` message's body (both fields are required: always written)."""
    return b"\x08" + varint(low) + b"\x10" + varint(high)


def number_halves(value: int) -> tuple[int, int]:
    """(low, high) of a 128-bit number, as sozu's `From<u128> for Uint128`."""
    return value & _U64, value >> 64


def ulid_halves(value: int) -> tuple[int, int]:
    """(low, high) of a ULID, as sozu's `From<Ulid> for Uint128` (top half in `low`)."""
    return value >> 64, value & _U64


def parse_ulid(value: bytes) -> int | None:
    """The 128-bit value of a 26-character ULID, or None if it is not one."""
    if len(value) != 26 or not value.isascii():
        return None
    try:
        number = int(value.decode("ascii").translate(_FROM_CROCKFORD), 32)
    except ValueError:
        return None
    return number if number >> 128 == 0 else None


def socket_address(address: str) -> bytes | None:
    """A `SocketAddress` body from `ip:port` (`[ip6]:port`), or None if it is not one."""
    host, colon, port_text = address.rpartition(":")
    if not colon or not port_text.isdigit() or not port_text.isascii():
        return None
    port = int(port_text)
    ip = ip_address(host)
    if ip is None or port > 0xFFFF:
        return None
    return delimited(1, ip) + uint(2, port)


@functools.lru_cache(maxsize=1024)  # a connection's client and backend: both seen before, mostly
def ip_address(host: str) -> bytes | None:
    """An `IpAddress` body from `1.2.3.4` or `[::1]`, or None if it is not one."""
    if host.startswith("[") and host.endswith("]"):
        family, host = socket.AF_INET6, host[1:-1].partition("%")[0]  # sozu keeps no zone
    elif ":" in host:
        return None  # an IPv6 address without brackets: where its port starts is a guess
    else:
        family = socket.AF_INET
    try:
        packed = socket.inet_pton(family, host)  # strict, unlike inet_aton
    except (OSError, ValueError):
        return None
    if family == socket.AF_INET:  # v4 = 1: fixed32 (little-endian) of the big-endian number
        return b"\x0d" + packed[::-1]
    return delimited(2, uint128(*number_halves(int.from_bytes(packed, "big"))))  # v6 = 2


def _wide(n: int) -> bytes:
    """The varint of a number past the table, held to what a uint64 can say."""
    return varint(min(n, _U64)) if n > 0 else b"\0"


# Fields 1 to 21 of a record around what `line` computes; durations are whole microseconds (as
# sozu's `as_micros`), rounded to the nearest nanosecond first.
_RECORD = (
    b"%s%s%s"  # message, request_id, fixed: 3-7
    b"\x42%s%s"  # endpoint
    b"\x68%s\x70%s\x78%s"  # service_time, bytes_in, bytes_out
    b"%s%s"  # fixed: 16-17, heads: 18-19
    b"\xa0\x01%s%s"  # request_time, response_time
    b"%s"  # fixed: 23
)


class ProtobufFormatter(Formatter):
    """Records in sozu's protobuf layout (see the module docstring)."""

    def __init__(self, tag: str, pid: int, clock: Callable[[], int] = time.time_ns) -> None:
        super().__init__(tag, pid, clock)
        self._tag = text(18, tag)
        self.restamp()  # the heads carry required fields: never leave them empty
        # The request id field of the last ULID read, around the bits its last four characters
        # hold: a worker's ids share their first 22 characters for 65536 requests in a row.
        self._ulid_head = b"-"  # (no ULID starts with it)
        self._ulid_start = self._ulid_end = b""
        self._ulid_bit20 = 0

    def _make_head_formats(self, tag: str, pid: int) -> tuple[bytes, bytes]:
        return b"", b""  # unused: `restamp` encodes the heads itself

    def restamp(self, nanos: int | None = None) -> None:
        """The heads: fields 18 (tag) and 19 (time, POSIX nanoseconds as a number)."""
        stamp = uint128(*number_halves(self.clock() if nanos is None else nanos))
        head = self._tag + _TIME + bytes((len(stamp),)) + stamp
        self.heads = (head, head)

    def fixed(self, r: AccessRecord) -> Fixed:
        """(fields 3-7, the HTTP endpoint without its status, 16-17, 23, 2 when no request id)."""
        try:  # the worker's session ids are hexadecimal numbers: the session's ULID for sozu
            session: int | None = int(r.session_id, 16)
        except ValueError:
            session = None
        if session is not None and (session < 0 or session >> 128):
            session = None
        middle = []
        if r.cluster_id is not None:
            middle.append(text(3, r.cluster_id))
        if r.backend_id is not None:
            middle.append(text(4, r.backend_id))
        for field, address in ((5, r.client_address), (6, r.backend_address)):
            encoded = socket_address(address) if address is not None else None
            if encoded is not None:
                middle.append(delimited(field, encoded))
        middle.append(text(7, r.protocol))
        endpoint = [
            text(n, v) for n, v in ((1, r.method), (2, r.authority), (3, r.path)) if v is not None
        ]
        request = [text(16, r.user_agent)] if r.user_agent is not None else []
        for name, value in sorted((r.tags or {}).items()):  # sozu's tags are a BTreeMap
            # a map entry is {key = 1, value = 2}; prost leaves out an empty key or value
            entry = (text(1, name) if name else b"") + (text(2, value) if value else b"")
            request.append(delimited(17, entry))
        session_ulid = uint128(*ulid_halves(session if session is not None else 0))
        return (
            b"".join(middle),
            b"".join(endpoint),
            b"".join(request),
            delimited(23, session_ulid) if session is not None else b"",
            delimited(2, session_ulid),  # sozu's request id falls back to the session's
        )

    def line(
        self,
        error: bool,
        fixed: Fixed,
        request_id: bytes | None,
        request_time: float,
        service_time: float,
        response_time: float | None,
        bytes_in: int,
        bytes_out: int,
        status: int | None,
        message: str | None,
    ) -> bytes:
        v = _VARINTS  # most numbers here take one or two bytes: read them from the table
        request_field = fixed[4] if request_id is None else self._request_id(request_id) or fixed[4]
        if status is None:
            http = fixed[1]
        else:
            http = fixed[1] + _STATUS + (v[status] if 0 <= status < _SMALL else _wide(status))
        size = len(http)
        endpoint = _HTTP + (v[size] if size < _SMALL else varint(size)) + http
        size = len(endpoint)
        us = int(service_time * 1e6 + 0.0005)  # see _RECORD
        service = v[us] if 0 <= us < _SMALL else _wide(us)
        us = int(request_time * 1e6 + 0.0005)
        request = v[us] if 0 <= us < _SMALL else _wide(us)
        if response_time is None:
            response = b""
        else:
            us = int(response_time * 1e6 + 0.0005)
            response = _RESPONSE_TIME + (v[us] if 0 <= us < _SMALL else _wide(us))
        record = _RECORD % (
            b"" if message is None else text(1, message),
            request_field,
            fixed[0],
            v[size] if size < _SMALL else varint(size),
            endpoint,
            service,
            v[bytes_in] if 0 <= bytes_in < _SMALL else _wide(bytes_in),
            v[bytes_out] if 0 <= bytes_out < _SMALL else _wide(bytes_out),
            fixed[2],
            self.heads[error],
            request,
            response,
            fixed[3],
        )
        size = len(record)
        return (v[size] if size < _SMALL else varint(size)) + record + _TRAILER

    def _request_id(self, request_id: bytes) -> bytes | None:
        """Field 2 for a ULID's text, or None if it is not one."""
        if request_id.startswith(self._ulid_head):
            high = _PAIRS.get(request_id[22:24])
            low = _PAIRS.get(request_id[24:])
            if high is not None and low is not None:
                bits = self._ulid_bit20 | high << 10 | low  # the varint's first three bytes
                return b"%s%c%c%c%s" % (  # % is the fastest here
                    self._ulid_start,
                    bits & 0x7F | 0x80,
                    bits >> 7 & 0x7F | 0x80,
                    bits >> 14 | 0x80,
                    self._ulid_end,
                )
        value = parse_ulid(request_id)
        if value is None:
            return None
        top, bottom = ulid_halves(value)
        body = uint128(top, bottom)
        if bottom >> 21:  # `high`'s varint goes past its third byte: the shortcut above holds
            self._ulid_head = request_id[:22]
            self._ulid_start = _REQUEST_ID + bytes((len(body),)) + b"\x08" + varint(top) + b"\x10"
            self._ulid_end = varint(bottom >> 21)
            self._ulid_bit20 = bottom & 0x10_0000
        return _REQUEST_ID + bytes((len(body),)) + body
