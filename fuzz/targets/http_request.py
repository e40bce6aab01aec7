"""HTTP/1.1 requests as a worker reads them: heads (http1/head), bodies (http1/body), paths.

The input is a client's byte stream, fed in reads of a size the first byte picks, the way a
session does: find the blank line, refuse a bare LF early, parse the head (`RequestParser`,
which also makes the routing path with request_path), follow its body (`LengthBody`,
`ChunkedBody`), then the next pipelined request. Each head that parses is also put through
what the worker does next: `router.normalize_host`, `forward_request` (trusted peer or not,
with a sticky cookie) and `sticky_cookie`.

Expected answer to bad input: `HttpSyntaxError` (status 400), after which the stream stops.
Anything else raised is a crash. Properties checked (an AssertionError is a finding too):
a body framer never takes more than it is given, and the head forwarded to the backend parses
again, with the same host and the same body framing (else the backend would read the body
differently from the proxy: a desynchronisation).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1 import head as http_head
from dataplane.proxy.http1.body import ChunkedBody, LengthBody
from dataplane.proxy.http1.forwarding import (
    ConnectionContext,
    TrustedProxies,
    forward_request,
    sticky_cookie,
)
from dataplane.proxy.http1.head import HEAD_END, RequestHead, RequestParser, has_bare_line_feed
from dataplane.proxy.routing.router import normalize_host

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "unit" / "fixtures" / "http"
PARSER = RequestParser("Sozu-Id")
TRUSTED = TrustedProxies(["10.0.0.0/8"])
CONTEXTS = (
    ConnectionContext(("192.0.2.1", 5000), ("127.0.0.1", 80), "http", "Sozu-Id", False, False),
    ConnectionContext(("10.1.2.3", 5000), ("::1", 443), "https", "Sozu-Id", True, True, TRUSTED),
)
MAX_REQUESTS = 8  # pipelined requests followed per input
# Header names without their colon: they are also the tokens of a Connection header.
DICTIONARY = (
    b"\r\n",
    b"\r\n\r\n",
    b": ",
    b", ",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\r\n",
    b"GET /",
    b"http://",
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
    b"chunked",
    b"Connection",
    b"close",
    b"keep-alive",
    b"Upgrade",
    b"Expect",
    b"100-continue",
    b"Cookie",
    b"SOZUBALANCEID=",
    b"X-Forwarded-For",
    b"Forwarded",
    b"X-Forwarded-Proto",
    b"X-Forwarded-Port",
    b"X-Real-IP",
    b"X-Request-Id",
    b"Sozu-Id",
    b"Authorization",
    b"%2e",
    b"%2F",
    b"/../",
    b"/./",
    b"//",
    b"0\r\n\r\n",
    b";ext=",
)


def reads(data: bytes, size: int) -> Iterator[bytes]:
    """The stream in reads of `size` bytes (0: all at once)."""
    if size == 0:
        yield data
        return
    for at in range(0, len(data), size):
        yield data[at : at + size]


def check_forwarded(request: RequestHead, trusted: bool) -> None:
    normalize_host(request.host)
    sticky_cookie(request, b"SOZUBALANCEID")
    head = forward_request(request, CONTEXTS[trusted], b"01ID", b"SOZUBALANCEID")
    try:
        again = PARSER.parse(head)
    except HttpSyntaxError as error:  # not an answer to the client: we made this head
        raise AssertionError(f"forwarded head refused ({error.reason}): {head!r}") from None
    assert again.host == request.host, (again.host, request.host)
    assert (again.content_length, again.chunked) == (request.content_length, request.chunked)


def one_input(data: bytes) -> None:
    if not data:
        return
    control, stream = data[0], data[1:]
    buffer = bytearray()
    body: LengthBody | ChunkedBody | None = None
    requests = 0
    try:
        for piece in reads(stream, control & 0x1F):
            buffer += piece
            while requests < MAX_REQUESTS:
                if body is None:
                    at = buffer.find(HEAD_END)
                    if at < 0:
                        if has_bare_line_feed(bytes(buffer)):
                            raise HttpSyntaxError("bare LF in request head")
                        break
                    head = bytes(buffer[: at + 4])
                    del buffer[: at + 4]
                    request = PARSER.parse(head)
                    requests += 1
                    check_forwarded(request, bool(control & 0x20))
                    if request.framing == http_head.LENGTH:
                        body = LengthBody(request.content_length)
                    elif request.framing == http_head.CHUNKED:
                        body = ChunkedBody()
                    continue
                taken = body.feed(buffer, 0, len(buffer))
                assert 0 <= taken <= len(buffer), (taken, len(buffer))
                del buffer[:taken]
                if not body.done:
                    break
                body = None
    except HttpSyntaxError as error:
        assert error.status == 400, error.status


def seeds() -> Iterator[bytes]:
    """The requests of the codec's corpus (tests/unit/fixtures/http), whole and in reads."""
    for path in sorted(FIXTURES.glob("request-*.txt")):
        raw = path.read_text().partition("\n---\n")[2]
        message = codecs.escape_decode("".join(raw.splitlines()).encode())[0]
        yield b"\x00" + message
        yield b"\x07" + message
