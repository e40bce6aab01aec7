"""What the proxy changes in the heads it forwards (sozu's header editor, section 6.5).

Request: `X-Forwarded-For`, `Forwarded` (RFC 7239, IPv6 bracketed), `X-Forwarded-Proto`,
`X-Forwarded-Port` and `X-Real-IP` (when `send_x_real_ip`) say what the proxy saw, `X-Request-Id`
is added when absent, the request id header (`Sozu-Id` unless renamed) added, hop-by-hop headers
dropped (RFC 9110 7.6.1), the sticky cookie removed. Response: hop-by-hop headers dropped,
request id header added, `Set-Cookie` for a new sticky backend, `Connection: close` when the
client connection ends after it.

Whose forwarding headers count is decided once per connection, from the peer address
(`TrustedProxies`, the listener's `trusted_proxies`, a pysozu extension):

- a trusted peer (a load balancer in front) gets sozu 2.1's behaviour: its `X-Forwarded-For`
  and `Forwarded` are appended to, its `X-Forwarded-Proto` / `X-Forwarded-Port` kept, its
  `X-Real-IP` kept unless `elide_x_real_ip`;
- any other peer's values are claims nobody vouches for: all five are dropped and replaced by
  what the proxy saw (sozu appends to and keeps them for every peer, so a plain-HTTP client
  could tell the backend it came over `https` on 443, or from any address).

Everything that depends only on the connection is computed once per connection
(`ConnectionContext`); per request only a join of a few byte strings remains, and a head
without any forwarding header (most clients' heads) takes the same path whatever the trust.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Callable
from typing import Any, Final

from dataplane.proxy.http1.head import RequestHead, ResponseHead, strip_spans
from dataplane.proxy.networks import Networks

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # an install without mypy: the decorator only speaks to mypyc

    def mypyc_attr(*_args: str, **_flags: bool) -> Callable[[type[Any]], type[Any]]:  # type: ignore[misc]
        return lambda cls: cls


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# Interpreted subclasses allowed: a unit test's fixed ids. `Host.request_ids` is this class, so
# a compiled session's `next()` is a native call, not a protocol's generic one (~500 fewer
# instructions per request).
@mypyc_attr(allow_interpreted_subclasses=True)
class RequestIds:
    """ULID-shaped request ids: time to the second, then a random base plus a counter, in
    16 hex digits. The first 14 are rendered only when they change (every 256 ids, or when
    `refresh` re-stamps the time); each id adds its last two from a table (one join)."""

    def __init__(self) -> None:
        value = int.from_bytes(os.urandom(8), "big") >> 1  # the counter's random start
        self._high = value >> 16  # the first 12 hex digits' value
        self._low = value & 0xFFFF  # the last 4's
        self._prefix = b""
        self._head = b""  # the time and the first 12 digits
        self._head14 = b""  # and the 13th and 14th (`_low`'s high byte)
        self.refresh()

    def refresh(self) -> None:
        """Re-stamp the time part (called by the worker's timer tick, once a second)."""
        millis = int(time.time()) * 1000
        chars = [_CROCKFORD[(millis >> shift) & 31] for shift in range(45, -1, -5)]
        self._prefix = "".join(chars).encode("ascii")
        self._head = b"%s%012X" % (self._prefix, self._high)
        self._head14 = self._head + _HEX_PAIRS[self._low >> 8]

    def next(self) -> bytes:
        low = self._low + 1
        if low > 0xFFFF:  # carry into the first 12 digits (wrapping as 64 bits would)
            low = 0
            self._high = (self._high + 1) & 0xFFFF_FFFF_FFFF
            self._head = b"%s%012X" % (self._prefix, self._high)
        self._low = low
        if not low & 0xFF:  # a new high byte (or a carry): the 14 digits change
            self._head14 = self._head + _HEX_PAIRS[low >> 8]
        return self._head14 + _HEX_PAIRS[low & 0xFF]


_HEX_PAIRS: Final = [b"%02X" % byte for byte in range(256)]


def _client_ip(text: str) -> str:
    """The peer address as headers show it: IPv4 as is, IPv4-mapped IPv6 unwrapped."""
    if ":" not in text:
        return text  # the kernel already wrote a canonical dotted quad
    address = ipaddress.IPv6Address(text.partition("%")[0])
    return str(address.ipv4_mapped or address)


def _ip_literal(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


# The peers whose forwarding headers are believed: a listener's `trusted_proxies`, looked up
# once per connection (a name, not a subclass: mypyc compiles this module, not networks.py).
TrustedProxies = Networks


class ConnectionContext:
    """The forwarding headers of one client connection, rendered once, and whether its peer
    is a trusted proxy (`trusted`: decided here, at accept, never per request)."""

    __slots__ = (
        "_address_head",
        "_client_address",
        "_element_head",
        "_element_tail",
        "_lines_tail",
        "_port",
        "absent_head",
        "absent_tail",
        "elide_real_ip",
        "id_header",
        "id_name",
        "peer_ip",
        "port_bytes",
        "real_ip",
        "trusted",
        "x_port",
        "x_proto",
        "xff_line",
    )

    def __init__(
        self,
        peer: tuple[str, int],
        public: tuple[str, int],
        proto: str,
        id_header: str,
        send_real_ip: bool,
        elide_real_ip: bool,
        trusted_proxies: TrustedProxies | None = None,
        like: ConnectionContext | None = None,
    ) -> None:
        if like is not None:  # `for_port`: the rest of this constructor's work is done
            self._copy(like, peer[1])
            return
        ip = _client_ip(peer[0])
        self.trusted = trusted_proxies is not None and ip in trusted_proxies
        public_ip = public[0]
        by = f'"[{public_ip}]"' if ":" in public_ip else public_ip
        # What surrounds the peer's port: `for_port` renders another connection's context
        # from the same address with a few joins (see HttpListener.connection_context).
        self._address_head = f"{_ip_literal(ip)}:"
        self._element_head = f'proto={proto};for="{self._address_head}'.encode("ascii")
        self._element_tail = f'";by={by}'.encode("ascii")
        self.peer_ip = ip.encode("ascii")
        self.xff_line = b"\r\nX-Forwarded-For: " + self.peer_ip
        self.x_proto = b"\r\nX-Forwarded-Proto: " + proto.encode("ascii")
        self.x_port = b"\r\nX-Forwarded-Port: %d" % public[1]
        self.real_ip = b"\r\nX-Real-IP: " + self.peer_ip if send_real_ip else b""
        self.elide_real_ip = elide_real_ip
        self.id_header = b"\r\n" + id_header.encode("ascii") + b": "
        self.id_name = id_header.lower().encode("ascii")  # as an HTTP/2 field name
        self._lines_tail = self.real_ip + self.x_port + self.x_proto
        # The forwarding lines of a request that carries none of its own, around the port:
        # what every connection from this address shares (forward_request joins the port in)
        self.absent_head = self.xff_line + b"\r\nForwarded: " + self._element_head
        self.absent_tail = self._element_tail + self._lines_tail
        self._set_port(peer[1])

    def _set_port(self, port: int) -> None:
        """The one part every forwarded head needs at once, the port's digits (joined between
        `absent_head` and `absent_tail` with the rest of the head: no concatenation here);
        the others that name the port are made when asked for (a trusted peer's heads, access
        logs)."""
        self._port = port
        self._client_address = ""
        self.port_bytes = str(port).encode("ascii")

    @property
    def client_address(self) -> str:
        """`ip:port` as access logs show it (made once per connection, when first asked)."""
        address = self._client_address
        if not address:
            address = self._client_address = self._address_head + str(self._port)
        return address

    @property
    def forwarded_element(self) -> bytes:
        """This connection's RFC 7239 element: `proto=..;for="ip:port";by=..`."""
        return self._element_head + str(self._port).encode("ascii") + self._element_tail

    @property
    def forwarded_line(self) -> bytes:
        return b"\r\nForwarded: " + self.forwarded_element

    def for_port(self, port: int) -> ConnectionContext:
        """The context of another connection from the same peer address and listener,
        differing only by its port: cheaper than a new one (no address parsing, no
        `trusted_proxies` lookup, no formatting but the port's)."""
        return ConnectionContext(("", port), _NO_PUBLIC, "", "", False, False, None, self)

    def _copy(self, like: ConnectionContext, port: int) -> None:
        self.trusted = like.trusted
        self.peer_ip = like.peer_ip
        self.xff_line = like.xff_line
        self.x_proto = like.x_proto
        self.x_port = like.x_port
        self.real_ip = like.real_ip
        self.elide_real_ip = like.elide_real_ip
        self.id_header = like.id_header
        self.id_name = like.id_name
        self._address_head = like._address_head
        self._element_head = like._element_head
        self._element_tail = like._element_tail
        self._lines_tail = like._lines_tail
        self.absent_head = like.absent_head
        self.absent_tail = like.absent_tail
        self._set_port(port)


_NO_PUBLIC: Final = ("", 0)  # `for_port`'s unused constructor arguments
REQUEST_ID_LINE: Final = b"\r\nX-Request-Id: "
END: Final = b"\r\n\r\n"


# The client's own lines of the headers an untrusted peer may not set (the parser removes every
# X-Forwarded-For and Forwarded line itself, and notes only that these are present).
_CLAIMS = re.compile(rb"\r\n(?:x-forwarded-proto|x-forwarded-port|x-real-ip):[^\r]*", re.I)
_REAL_IP = re.compile(rb"\r\nx-real-ip:[^\r]*", re.I)


def _spans(pattern: re.Pattern[bytes], block: bytes) -> list[tuple[int, int]]:
    return [match.span() for match in pattern.finditer(block)]


def forward_request(
    request: RequestHead, context: ConnectionContext, request_id: bytes, sticky_name: bytes
) -> bytes:
    """The head to send to the backend for `request`."""
    removed = request.removed
    trusted = context.trusted
    if (
        not trusted
        and not request.has_x_proto
        and not request.has_x_port
        and request.x_real_ip is None
        and not (request.cookies and sticky_name)
        and request.upgrade is None
    ):
        # The usual case, as the general one below renders it, in one join of a tuple: no
        # list of parts grown piece by piece (a connection's first request renders here).
        block = request.stripped
        if block is None:
            block = request.stripped = strip_spans(request.block, removed)
        if request.has_request_id:
            return b"".join(
                (
                    request.line,
                    block,
                    context.absent_head,
                    context.port_bytes,
                    context.absent_tail,
                    context.id_header,
                    request_id,
                    END,
                )
            )
        return b"".join(
            (
                request.line,
                block,
                context.absent_head,
                context.port_bytes,
                context.absent_tail,
                REQUEST_ID_LINE,
                request_id,
                context.id_header,
                request_id,
                END,
            )
        )
    if not trusted:
        if request.has_x_proto or request.has_x_port or request.x_real_ip is not None:
            removed = [*removed, *_spans(_CLAIMS, request.block)]  # rare: costs a search
    elif request.x_real_ip is not None and context.elide_real_ip:
        removed = [*removed, *_spans(_REAL_IP, request.block)]  # every line, not the last
    cookie_lines: list[bytes] = []
    if request.cookies and sticky_name:
        removed, cookie_lines = _without_sticky_cookie(request, removed, sticky_name)
    if removed is request.removed:  # the usual case: what every client sending it gets
        block = request.stripped
        if block is None:
            block = request.stripped = strip_spans(request.block, removed)
    else:
        block = strip_spans(request.block, removed)
    parts = [request.line, block, *cookie_lines]
    if not trusted or (
        request.x_forwarded_for is None
        and request.forwarded is None
        and not request.has_x_port
        and not request.has_x_proto
    ):
        parts += (context.absent_head, context.port_bytes, context.absent_tail)
    else:
        if request.x_forwarded_for is None:
            parts.append(context.xff_line)
        else:
            parts += (b"\r\nX-Forwarded-For: ", request.x_forwarded_for, b", ", context.peer_ip)
        if request.forwarded is None:
            parts.append(context.forwarded_line)
        else:
            parts += (b"\r\nForwarded: ", request.forwarded, b", ", context.forwarded_element)
        parts.append(context.real_ip)
        if not request.has_x_port:
            parts.append(context.x_port)
        if not request.has_x_proto:
            parts.append(context.x_proto)
    if not request.has_request_id:
        parts += (b"\r\nX-Request-Id: ", request_id)
    parts += (context.id_header, request_id)
    if request.upgrade is not None:
        parts += (b"\r\nConnection: Upgrade\r\nUpgrade: ", request.upgrade)
    parts.append(b"\r\n\r\n")
    return b"".join(parts)


def _without_sticky_cookie(
    request: RequestHead, removed: list[tuple[int, int]], sticky_name: bytes
) -> tuple[list[tuple[int, int]], list[bytes]]:
    """Drop the sticky cookie from every Cookie header (and headers left empty)."""
    prefix = sticky_name + b"="
    lines: list[bytes] = []
    removed = list(removed)
    for start, end, value in request.cookies:
        if prefix not in value:
            continue
        kept = [c for c in (c.strip() for c in value.split(b";")) if not c.startswith(prefix)]
        removed.append((start, end))
        if kept:
            lines.append(b"\r\nCookie: " + b"; ".join(kept))
    return removed, lines


def sticky_cookie(request: RequestHead, sticky_name: bytes) -> str | None:
    """The value of the sticky cookie the client sent, if any."""
    prefix = sticky_name + b"="
    for _start, _end, value in request.cookies:
        for cookie in value.split(b";"):
            cookie = cookie.strip()
            if cookie.startswith(prefix):
                return cookie[len(prefix) :].decode("ascii", "replace")
    return None


CLOSE: Final = b"\r\nConnection: close"
KEEP_ALIVE: Final = b"\r\nConnection: keep-alive"  # HTTP/1.0 clients need to be told


def forward_response(
    response: ResponseHead, id_line: bytes, connection: bytes = b"", set_cookie: bytes = b""
) -> bytes:
    """The head to send to the client for a backend's `response`."""
    if response.status == 101:
        return b"".join((response.line, response.block, id_line, b"\r\n\r\n"))
    block = strip_spans(response.block, response.removed) if response.removed else response.block
    return b"".join((response.line, block, id_line, set_cookie, connection, b"\r\n\r\n"))
