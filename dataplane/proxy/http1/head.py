"""Sans-IO parsing of HTTP/1.1 message heads (request and response), strict by construction.

A head is validated in one C-level regex match over its bytes: a request line (token method,
visible-ASCII target, `HTTP/1.0` or `HTTP/1.1`), then `name:value` lines ended by CRLF. That one
match refuses every smuggling shape that lives in a head: bare LF or CR, whitespace before a
colon, obsolete line folding, NUL and control bytes, HTTP/0.9. The headers the proxy acts on are
then found with a second regex over the lowercased head, so the cost per request does not grow
with the headers nobody looks at. Framing rules (Content-Length, Transfer-Encoding) are checked
here; `body` follows the body they announce. The path routes match (`route_path`:
normalised, no query; `request_path`) is made here too, once per parsed head, and a target
that has none (a `#`, an escaped `/` or NUL...) is refused like any other bad head.

Positions in `removed` are spans of the head's header block (`\\r\\nname:value`) that the
forwarder must drop: hop-by-hop headers and those it rewrites.
"""

from __future__ import annotations

import mmap
import re
from typing import Final

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.request_path import route_path

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = rb"[\t\x20-\x7e\x80-\xff]*"
_BLOCK = rb"((?:\r\n" + _TOKEN + rb":" + _VALUE + rb")*)\r\n\r\n"

_REQUEST = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])" + _BLOCK)
_RESPONSE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: " + _VALUE + rb")?" + _BLOCK)
_IS_TOKEN = re.compile(_TOKEN)

_ABSOLUTE = re.compile(rb"https?://([^/?#]*)([/?#].*)?", re.IGNORECASE)

_REQUEST_FIELDS = (
    b"host|content-length|transfer-encoding|connection|upgrade|keep-alive|proxy-connection|te|"
    b"expect|cookie|x-forwarded-for|forwarded|x-forwarded-proto|x-forwarded-port|"
    b"x-real-ip|x-request-id|authorization"
)
_RESPONSE_FIELDS = (
    b"content-length|transfer-encoding|connection|upgrade|keep-alive|proxy-connection"
)

HEAD_END: Final = b"\r\n\r\n"
# A head is looked for in a bytes copy of the buffer's first SMALL_READ bytes (most reads
# hold one whole head): the copy is the head itself, and bytes.find costs less than mmap.find
# (whose arguments are parsed generically) or a memoryview slice and bytes() of it.
SMALL_READ: Final = 4096
_CONNECTION_OPTIONS = frozenset((b"close", b"keep-alive", b"upgrade"))
_NO_TOKENS: frozenset[bytes] = frozenset()
_SINGLE_TOKENS = {token: frozenset((token,)) for token in _CONNECTION_OPTIONS}
_END_TO_END = frozenset((b"host", b"content-length", b"transfer-encoding"))

# Framing of a message body, as announced by its head.
NO_BODY: Final = 0
LENGTH: Final = 1
CHUNKED: Final = 2
UNTIL_CLOSE: Final = 3


def _field_finder(fields: bytes, extra: bytes) -> re.Pattern[bytes]:
    names = fields + (b"|" + re.escape(extra) if extra else b"")
    return re.compile(rb"\r\n(" + names + rb"):[ \t]*([^\r]*)")


def _line_end(block: bytes, start: int) -> int:
    end = block.find(b"\r\n", start)
    return len(block) if end < 0 else end


def _connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    if len(values) == 1 and values[0] in _CONNECTION_OPTIONS:
        return _SINGLE_TOKENS[values[0]]  # the usual `keep-alive` or `close`
    return frozenset(token.strip() for value in values for token in value.split(b",")) - {b""}


def _content_length(value: bytes, duplicate: bool) -> int:
    if duplicate:
        raise HttpSyntaxError("several Content-Length headers")
    if not value.isdigit() or len(value) > 18:
        raise HttpSyntaxError(f"invalid Content-Length {value[:32]!r}")
    return int(value)


def _is_chunked(value: bytes, duplicate: bool) -> bool:
    if duplicate or value != b"chunked":
        raise HttpSyntaxError(f"unsupported Transfer-Encoding {value[:32]!r}")
    return True


class RequestHead:
    """One parsed request head; byte fields are slices of what the client sent.

    Class attributes are the defaults: a typical request sets only a handful of them.
    """

    host = b""
    path = ""  # the target as sent (origin-form; query included): logs, redirects
    route_path = ""  # what routes match: normalised, no query (request_path.route_path)
    content_length = 0
    chunked = False
    upgrade: bytes | None = None
    expect_continue = False
    cookies: list[tuple[int, int, bytes]] | tuple[()] = ()
    x_forwarded_for: bytes | None = None
    forwarded: bytes | None = None
    has_x_proto = False
    has_x_port = False
    has_request_id = False
    x_real_ip: tuple[int, int] | None = None
    authorization: bytes | None = None
    http10 = False
    # The block without the `removed` spans, made once: parsed heads are shared by every
    # connection that sends the same bytes (HttpListener.parse), so is this.
    stripped: bytes | None = None
    # The routing decision for this head (mux/request_route.py): made on the listener whose
    # `routes_version` is `decided_by`, for the normalised host `decided_host`, and valid while
    # both are the same objects (a new connection sending a known head is routed without the
    # listener's lookup: its key tuple, hash and dict probe, ~700 instructions).
    decided_by: object = None
    decided_host = ""
    decision: object = None

    def __init__(self, method: bytes, line: bytes, block: bytes, version: bool) -> None:
        self.method = method
        self.line = line
        self.block = block
        self.keep_alive = version
        self.removed: list[tuple[int, int]] = []

    @property
    def framing(self) -> int:
        if self.chunked:
            return CHUNKED
        return LENGTH if self.content_length else NO_BODY


class RequestParser:
    """Parses request heads for one listener (whose Sozu-Id header name it strips)."""

    def __init__(self, request_id_header: str = "Sozu-Id") -> None:
        self.request_id_header = request_id_header.lower().encode("ascii")
        self._fields = _field_finder(_REQUEST_FIELDS, self.request_id_header)

    def parse(self, head: bytes) -> RequestHead:
        """Parse `head`, which ends with the blank line; raise HttpSyntaxError (400)."""
        match = _REQUEST.fullmatch(head)
        if match is None:
            raise HttpSyntaxError(_diagnose(head))
        method, target, version, block = match.groups()
        request = RequestHead(method, head[: match.start(4)], block, version == b"1")
        if version == b"0":
            request.http10 = True
        hosts: list[bytes] = []
        connection: list[bytes] = []
        has_length = has_chunked = False
        removed = request.removed
        for field in self._fields.finditer(block.lower()):
            name = field.group(1)
            span = field.span()
            value = block[field.start(2) : span[1]].rstrip(b" \t")
            if name == b"host":
                hosts.append(value)
            elif name == b"content-length":
                request.content_length = _content_length(value, has_length)
                has_length = True
            elif name == b"transfer-encoding":
                has_chunked = _is_chunked(value.lower(), has_chunked)
            elif name == b"cookie":
                if not request.cookies:
                    request.cookies = []
                request.cookies.append((*span, value))
            elif name == b"x-forwarded-for":
                request.x_forwarded_for = value
                removed.append(span)
            elif name == b"forwarded":
                request.forwarded = value
                removed.append(span)
            elif name == b"x-forwarded-proto":
                request.has_x_proto = True
            elif name == b"x-forwarded-port":
                request.has_x_port = True
            elif name == b"x-request-id":
                request.has_request_id = True
            elif name == b"expect":
                request.expect_continue = value.lower() == b"100-continue"
            elif name == b"upgrade":
                request.upgrade = value
                removed.append(span)
            elif name == b"x-real-ip":
                request.x_real_ip = span
            elif name == b"authorization":
                request.authorization = value
            else:
                if name == b"connection":
                    connection.append(value.lower())
                removed.append(span)
        if has_chunked:
            if has_length:
                raise HttpSyntaxError("both Content-Length and Transfer-Encoding")
            if version == b"0":
                raise HttpSyntaxError("Transfer-Encoding in an HTTP/1.0 request")
            request.chunked = True
        if connection:
            tokens = _connection_tokens(connection)
            if b"close" in tokens:
                request.keep_alive = False
            elif b"keep-alive" in tokens and version == b"0":
                request.keep_alive = True
            if tokens - _CONNECTION_OPTIONS:
                _remove_listed(block, tokens, removed)
        else:
            tokens = _NO_TOKENS
        if request.upgrade is not None and b"upgrade" not in tokens:
            request.upgrade = None
        if len(hosts) != 1:
            raise HttpSyntaxError("missing Host" if not hosts else "several Host headers")
        path = target.decode("ascii")
        if target[:1] != b"/" and target != b"*":
            absolute = _ABSOLUTE.fullmatch(target)
            if absolute is None:
                raise HttpSyntaxError(f"unsupported request target {target[:64]!r}")
            if absolute.group(1).lower() != hosts[0].lower():
                raise HttpSyntaxError("absolute-form target disagrees with Host")
            rest = absolute.group(2) or b"/"
            path = (rest if rest[:1] == b"/" else b"/" + rest).decode("ascii")
        request.route_path = route_path(path)
        request.host = hosts[0]
        request.path = path
        return request


def _remove_listed(
    block: bytes, tokens: frozenset[bytes], removed: list[tuple[int, int]], status: int = 400
) -> None:
    """Drop the headers a Connection header names (RFC 9110 7.6.1), except our own rewrites.

    Naming Host, Content-Length or Transfer-Encoding is refused: dropping them would forward
    a message whose body (or route) the next hop reads differently from us.
    """
    if not tokens.isdisjoint(_END_TO_END):
        raise HttpSyntaxError("Connection names Host, Content-Length or Transfer-Encoding", status)
    lower = block.lower()
    for token in tokens - _CONNECTION_OPTIONS:
        if _IS_TOKEN.fullmatch(token) is None:
            continue  # names no header (`host: a` must not drop `Host: a:80`)
        needle = b"\r\n" + token + b":"
        at = lower.find(needle)
        while at >= 0:
            span = (at, _line_end(block, at + len(needle)))
            if span not in removed:
                removed.append(span)
            at = lower.find(needle, at + 1)


def _diagnose(head: bytes) -> str:
    line, _, _rest = head.partition(b"\r\n")
    if b"\n" in line or b"\r" in line:
        return "bare CR or LF in the request line"
    if not line.endswith((b" HTTP/1.1", b" HTTP/1.0")):
        return f"invalid request line {line[:64]!r}"
    if _REQUEST.fullmatch(line + b"\r\n\r\n") is None:
        return f"invalid request line {line[:64]!r}"
    return "invalid header line (bare CR/LF, space before colon, folding or bad byte)"


class ResponseHead:
    """One parsed response head (class attributes are the defaults)."""

    content_length: int | None = None
    chunked = False

    def __init__(self, status: int, line: bytes, block: bytes, version: bool) -> None:
        self.status = status
        self.line = line
        self.block = block
        self.keep_alive = version
        self.removed: list[tuple[int, int]] = []

    def framing(self, request_method: bytes) -> int:
        status = self.status
        if request_method == b"HEAD" or status < 200 or status in (204, 304):
            return NO_BODY
        if self.chunked:
            return CHUNKED
        if self.content_length is not None:
            return LENGTH if self.content_length else NO_BODY
        return UNTIL_CLOSE


class ResponseParser:
    """Parses backend response heads; every refusal is a 502 for the client."""

    def __init__(self) -> None:
        self._fields = _field_finder(_RESPONSE_FIELDS, b"")

    def parse(self, head: bytes) -> ResponseHead:
        match = _RESPONSE.fullmatch(head)
        if match is None:
            raise HttpSyntaxError("invalid response head from the backend", 502)
        version, status, block = match.groups()
        response = ResponseHead(int(status), head[: match.start(3)], block, version == b"1")
        connection: list[bytes] = []
        has_length = has_chunked = False
        removed = response.removed
        try:
            for field in self._fields.finditer(block.lower()):
                name = field.group(1)
                if name == b"content-length":
                    value = field.group(2).rstrip(b" \t")
                    if has_length or not value.isdigit() or len(value) > 18:
                        _content_length(value, has_length)  # raises the precise error
                    response.content_length = int(value)
                    has_length = True
                    continue
                if name == b"transfer-encoding":
                    has_chunked = _is_chunked(field.group(2).rstrip(b" \t"), has_chunked)
                    continue
                if name == b"connection":
                    connection.append(field.group(2))
                removed.append(field.span())
        except HttpSyntaxError as error:
            raise HttpSyntaxError(error.reason, 502) from None
        if has_chunked:
            if has_length:
                raise HttpSyntaxError("both Content-Length and Transfer-Encoding", 502)
            response.chunked = True
        if connection:
            tokens = _connection_tokens(connection)
            if b"close" in tokens:
                response.keep_alive = False
            elif b"keep-alive" in tokens and version == b"0":
                response.keep_alive = True
            if tokens - _CONNECTION_OPTIONS:
                _remove_listed(block, tokens, removed, 502)
        return response


def strip_spans(block: bytes, removed: list[tuple[int, int]]) -> bytes:
    """The header block without the given spans (which may come in any order)."""
    if not removed:
        return block
    parts = []
    position = 0
    for start, end in sorted(removed):
        if start >= position:
            parts.append(block[position:start])
            position = end
    parts.append(block[position:])
    return b"".join(parts)


def head_bytes(buffer: mmap.mmap | bytearray, start: int, end: int) -> bytes:
    """`buffer[start:end]` as bytes: a slice of an mmap is bytes already (of a bytearray, as
    some tests lend, it is converted)."""
    data = buffer[start:end]
    return data if type(data) is bytes else bytes(data)


def find_head(
    buffer: mmap.mmap | bytearray, start: int, end: int, last: bytes
) -> tuple[bytes, int, bytes]:
    """(the head, its end, the bytes copied from `start`: a response's short body is sliced
    from them) when `buffer[start:end]` starts with a whole head; (bytes read so far when
    they are SMALL_READ or fewer, else b"", -1, b"") when it does not yet. `last` is the
    connection's previous head (b"": none): when the bytes start with it, it is the head,
    found without a search (bytes.find costs ~1,200 instructions, its arguments parsed
    generically; a keep-alive client repeats its head, a backend its head within a second)."""
    data = head_bytes(buffer, start, min(end, start + SMALL_READ))
    size = len(last)
    if size and len(data) >= size and (data if len(data) == size else data[:size]) == last:
        return last, start + size, data  # (`last` ends with its first HEAD_END: found so)
    at = data.find(HEAD_END)
    if at >= 0:
        at += 4
        return (data if at == len(data) else data[:at]), start + at, data
    if end - start <= SMALL_READ:
        return data, -1, b""
    at = buffer.find(HEAD_END, start + SMALL_READ - 3, end)  # a longer head: the rest
    if at < 0:
        return b"", -1, b""
    return head_bytes(buffer, start, at + 4), at + 4, data


def has_bare_line_feed(data: bytes | bytearray) -> bool:
    """True when an incomplete head already shows an LF without its CR (refuse it early)."""
    return data.count(b"\n") != data.count(b"\r\n")
