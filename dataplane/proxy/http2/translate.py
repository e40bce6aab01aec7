"""Protocol translation between HTTP/2 heads (events) and HTTP/1.1 heads (bytes, http_head).

h2 -> h1 (`h2_request_to_h1`, `h2_response_to_h1`) writes an HTTP/1.1 head the existing
strict parser (`http_head.RequestParser`) reads back, so routing, forwarding headers and
every header edit run on HTTP/2 requests exactly as on HTTP/1.1 ones. h1 -> h2
(`h1_request_to_h2`, `h1_response_to_h2`) starts from the parsed `http_head` heads.

Rules (RFC 9113 8.2 and 8.3, sozu's converter):
- Host comes from `:authority`; a Host field that disagrees is refused (400). In h1 -> h2,
  `:authority` comes from Host and Host is dropped.
- Cookie crumbs are joined with "; " for HTTP/1.1 and split on "; " for HTTP/2.
- Connection-specific fields (connection, keep-alive, proxy-connection, transfer-encoding,
  upgrade, and those a Connection field names) never cross; `te` crosses to HTTP/2 only as
  "trailers" and never to HTTP/1.1 (it is hop-by-hop there).
- Body framing: Content-Length is kept; an HTTP/2 message with a body of unknown length
  becomes chunked in HTTP/1.1 (`chunk`, `last_chunk`), which is also the only way its
  trailers cross; with Content-Length they are dropped. Trailer fields HTTP/1.1 forbids
  (http_body.FORBIDDEN_TRAILERS) are dropped. A bodyless request whose method usually has a
  body gets `content-length: 0`.
- Responses: 1xx heads cross as informational heads (101 cannot: no upgrade over HTTP/2);
  a response to HEAD, a 204, a 304 or a zero Content-Length ends the HTTP/2 stream at once.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.body import FORBIDDEN_TRAILERS
from dataplane.proxy.http1.head import HEAD_END, NO_BODY, ResponseParser, strip_spans
from dataplane.proxy.http1.head import RequestHead as H1Request
from dataplane.proxy.http1.head import ResponseHead as H1Response
from dataplane.proxy.http2.events import Fields, RequestHead, ResponseHead

HOP_BY_HOP: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te")
)
_BODY_METHODS = frozenset((b"POST", b"PUT", b"PATCH"))
_REASONS = {int(status): status.phrase.encode() for status in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _REASONS.get(status, b"")
        line = b"HTTP/1.1 %d %s" % (status, reason)
        if 100 <= status < 600:
            _STATUS_LINES[status] = line
    return line


# h2 -> h1 ---------------------------------------------------------------------------------


def h2_request_to_h1(head: RequestHead) -> tuple[bytes, bool]:
    """The HTTP/1.1 head of an HTTP/2 request, and whether its body goes chunked."""
    authority = head.authority
    lines = [b"%s %s HTTP/1.1\r\nhost: %s" % (head.method, head.path, authority)]
    cookies: list[bytes] = []
    for name, value in head.headers:
        if name in HOP_BY_HOP:
            continue
        if name == b"host":
            if value.lower() != authority.lower():
                raise HttpSyntaxError("Host disagrees with :authority")
            continue
        if name == b"cookie":
            if not cookies:
                lines.append(b"")  # the joined cookie line goes where the first crumb was
                at = len(lines) - 1
            cookies.append(value)
            continue
        lines.append(name + b": " + value)
    if cookies:
        lines[at] = b"cookie: " + b"; ".join(cookies)
    chunked = False
    if head.content_length is None:
        if not head.end_stream:
            lines.append(b"transfer-encoding: chunked")
            chunked = True
        elif head.method in _BODY_METHODS:
            lines.append(b"content-length: 0")
    lines.append(b"\r\n")
    return b"\r\n".join(lines), chunked


def h2_response_to_h1(
    head: ResponseHead, request_method: bytes, keep_alive: bool = True
) -> tuple[bytes, bool]:
    """The HTTP/1.1 head of an HTTP/2 response, and whether its body goes chunked.

    A body of unknown length is chunked; for an HTTP/1.0 client (`keep_alive` False and no
    chunked coding there) it is delimited by closing the connection instead.
    """
    status = head.status
    lines = [status_line(status)]
    for name, value in head.headers:
        if name not in HOP_BY_HOP:
            lines.append(name + b": " + value)
    chunked = False
    bodyless = request_method == b"HEAD" or status < 200 or status in (204, 304)
    if head.content_length is None and not bodyless:
        if head.end_stream:
            lines.append(b"content-length: 0")
        elif keep_alive:
            lines.append(b"transfer-encoding: chunked")
            chunked = True
        else:
            lines.append(b"connection: close")
    lines.append(b"\r\n")
    return b"\r\n".join(lines), chunked


def h2_informational_to_h1(status: int, fields: Fields) -> bytes:
    """A 1xx head for an HTTP/1.1 client (100 Continue, 103 Early Hints)."""
    lines = [status_line(status)]
    lines.extend(name + b": " + value for name, value in fields if name not in HOP_BY_HOP)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk holding `data` (empty data makes no chunk: that would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


def carried_trailers(fields: Fields) -> Fields:
    """The trailer fields HTTP/1.1 may carry (those it forbids are dropped)."""
    return [(name, value) for name, value in fields if name not in FORBIDDEN_TRAILERS]


def last_chunk(trailers: Fields | None = None) -> bytes:
    """The end of a chunked body, carrying `trailers` (minus those HTTP/1.1 forbids)."""
    if not trailers:
        return b"0\r\n\r\n"
    lines = [b"0"]
    lines.extend(name + b": " + value for name, value in carried_trailers(trailers))
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


# h1 -> h2 ---------------------------------------------------------------------------------


def _h1_fields(block: bytes, removed: list[tuple[int, int]]) -> list[tuple[bytes, bytes]]:
    """The (lowercase name, value) fields of an HTTP/1.1 header block, minus `removed`."""
    fields = []
    for line in strip_spans(block, removed).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields.append((name.lower(), value.strip(b" \t")))
    return fields


def h1_request_to_h2(
    request: H1Request, scheme: bytes
) -> tuple[bytes, bytes, bytes, bytes, Fields]:
    """(method, scheme, authority, path, fields) of an HTTP/1.1 request, for open_stream().

    A chunked request body must be sent de-chunked: HTTP/2 frames it itself.
    """
    fields: Fields = []
    for name, value in _h1_fields(request.block, request.removed):
        if name == b"host" or (name in HOP_BY_HOP and not (name == b"te" and value == b"trailers")):
            continue
        if name == b"cookie":
            fields.extend((b"cookie", crumb) for crumb in value.split(b"; ") if crumb)
            continue
        fields.append((name, value))
    return request.method, scheme, request.host, request.path.encode("ascii"), fields


_TE_TRAILERS = re.compile(rb"\r\nte:[^\r]*\btrailers\b", re.IGNORECASE)


def asks_trailers(request: H1Request) -> bool:
    """Whether an HTTP/1.1 client said `TE: trailers` (the parser keeps no TE value)."""
    return _TE_TRAILERS.search(request.block) is not None


def forwarded_to_h2(
    forwarded: bytes, te_trailers: bool
) -> tuple[bytes, bytes, bytes, bytes, Fields]:
    """(method, scheme, authority, path, fields) of a forwarded HTTP/1.1 head (forwarding
    headers and edits in), for an h2c backend: Host becomes `:authority`, connection-specific
    fields stay behind (Transfer-Encoding too: HTTP/2 frames the body itself), cookies are
    split into crumbs, Content-Length is kept; `te: trailers` is added when the client asked."""
    lines = forwarded[: -len(HEAD_END)].split(b"\r\n")
    method, path, _ = lines[0].split(b" ", 2)
    authority = b""
    fields: Fields = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"host":
            authority = value
        elif name == b"cookie":
            fields.extend((b"cookie", crumb) for crumb in value.split(b"; ") if crumb)
        elif name not in HOP_BY_HOP:
            fields.append((name, value))
    if te_trailers:
        fields.append((b"te", b"trailers"))
    return method, b"http", authority, path, fields


def h1_response_to_h2(response: H1Response, request_method: bytes) -> tuple[int, Fields, bool]:
    """(status, fields, end_stream) of an HTTP/1.1 response head, for send_response().

    A 1xx other than 101 is informational (a final head follows); 101 cannot cross.
    """
    status = response.status
    if status == 101:
        raise HttpSyntaxError("protocol upgrade cannot cross to HTTP/2", 502)
    fields = [
        (name, value)
        for name, value in _h1_fields(response.block, response.removed)
        if name not in HOP_BY_HOP
    ]
    end_stream = status >= 200 and response.framing(request_method) == NO_BODY
    return status, fields, end_stream


# A backend answers the same head again and again (its Date changes once a second): the parse
# and the translation of a head are kept, by its bytes and the request's method. The parsed
# head is only read after this; the fields are copied, as the stream adds its own.
MAX_HEADS: Final = 256
MAX_HEAD: Final = 2048
_heads: dict[tuple[bytes, bytes], tuple[H1Response, int, Fields]] = {}


def backend_response(
    parser: ResponseParser, head: bytes, request_method: bytes
) -> tuple[H1Response, int, Fields]:
    """(parsed head, status, HTTP/2 fields) of a backend's HTTP/1.1 response head; raises
    HttpSyntaxError as `parser.parse` and `h1_response_to_h2` do (101 included)."""
    key = (head, request_method)
    known = _heads.get(key)
    if known is not None:
        return known[0], known[1], list(known[2])
    response = parser.parse(head)
    if response.status == 101:
        raise HttpSyntaxError("101 Switching Protocols to an HTTP/2 request", 502)
    status, fields, _ = h1_response_to_h2(response, request_method)
    if len(head) <= MAX_HEAD:
        if len(_heads) >= MAX_HEADS:
            _heads.clear()
        _heads[key] = (response, status, fields)
    return response, status, list(fields)
