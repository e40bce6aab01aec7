"""HTTP/1.1 responses as a worker reads them from a backend: heads (http_head) and bodies.

The input is a backend's byte stream (after a control byte that picks the read size and the
request method, GET or HEAD), fed the way a session does: 1xx heads are passed on and the next
head read, the final head's framing (`ResponseHead.framing`) picks the body framer
(`LengthBody`, `ChunkedBody`, `UntilCloseBody`), then the next response on a kept-alive
connection. Each head that parses is also put through `forward_response`.

Expected answer to bad input: `HttpSyntaxError` (status 502: the backend's fault), after which
the stream stops. Anything else raised is a crash. Properties checked (an AssertionError is a
finding too): a body framer never takes more than it is given, and the head forwarded to the
client parses again with the same status and body framing.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1 import head as http_head
from dataplane.proxy.http1.body import ChunkedBody, LengthBody, UntilCloseBody
from dataplane.proxy.http1.forwarding import CLOSE, forward_response
from dataplane.proxy.http1.head import HEAD_END, ResponseHead, ResponseParser, has_bare_line_feed

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "unit" / "fixtures" / "http"
PARSER = ResponseParser()
MAX_RESPONSES = 8
DICTIONARY = (
    b"\r\n",
    b"\r\n\r\n",
    b": ",
    b", ",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 ",
    b"100 Continue",
    b"101",
    b"204",
    b"304",
    b"Content-Length",
    b"Transfer-Encoding",
    b"chunked",
    b"Connection",
    b"close",
    b"keep-alive",
    b"Upgrade",
    b"Proxy-Connection",
    b"0\r\n\r\n",
)


def reads(data: bytes, size: int) -> Iterator[bytes]:
    if size == 0:
        yield data
        return
    for at in range(0, len(data), size):
        yield data[at : at + size]


def check_forwarded(response: ResponseHead, method: bytes, closing: bool) -> None:
    head = forward_response(response, b"\r\nSozu-Id: 01ID", CLOSE if closing else b"")
    try:
        again = PARSER.parse(head)
    except HttpSyntaxError as error:  # not the backend's fault: we made this head
        raise AssertionError(f"forwarded head refused ({error.reason}): {head!r}") from None
    assert again.status == response.status
    assert again.framing(method) == response.framing(method), head
    assert (again.content_length, again.chunked) == (response.content_length, response.chunked)


def one_input(data: bytes) -> None:
    if not data:
        return
    control, stream = data[0], data[1:]
    method = b"HEAD" if control & 0x20 else b"GET"
    buffer = bytearray()
    body: LengthBody | ChunkedBody | UntilCloseBody | None = None
    responses = 0
    try:
        for piece in reads(stream, control & 0x1F):
            buffer += piece
            while responses < MAX_RESPONSES:
                if body is None:
                    at = buffer.find(HEAD_END)
                    if at < 0:
                        if has_bare_line_feed(bytes(buffer)):
                            raise HttpSyntaxError("bare LF in response head", 502)
                        break
                    head = bytes(buffer[: at + 4])
                    del buffer[: at + 4]
                    response = PARSER.parse(head)
                    responses += 1
                    check_forwarded(response, method, bool(control & 0x40))
                    framing = response.framing(method)
                    if framing == http_head.LENGTH:
                        body = LengthBody(response.content_length or 0)
                    elif framing == http_head.CHUNKED:
                        body = ChunkedBody()
                    elif framing == http_head.UNTIL_CLOSE:
                        body = UntilCloseBody()
                    continue
                taken = body.feed(buffer, 0, len(buffer))
                assert 0 <= taken <= len(buffer), (taken, len(buffer))
                del buffer[:taken]
                if not body.done:
                    break
                body = None
    except HttpSyntaxError as error:
        # A bad head is a 502; a bad body only closes the connections (its status is unused).
        assert body is not None or error.status == 502, error.status


def seeds() -> Iterator[bytes]:
    """The responses of the codec's corpus (tests/unit/fixtures/http), whole and in reads."""
    for path in sorted(FIXTURES.glob("response-*.txt")):
        raw = path.read_text().partition("\n---\n")[2]
        message = codecs.escape_decode("".join(raw.splitlines()).encode())[0]
        yield b"\x00" + message
        yield b"\x25" + message
