"""Regression tests for what the fuzz targets (fuzz/) turned up, one input each, raw bytes.

- A `Connection` header naming Host, Content-Length or Transfer-Encoding made the proxy drop
  that header while still framing the body by it: the backend got `POST` without its length
  and read the body as the next request (a desynchronisation), or got no Host. Found by
  fuzz/targets/http_request.py's property "the forwarded head parses again, same framing".
  Now refused: 400 for a request, 502 for a response.
"""

from __future__ import annotations

import pytest

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.forwarding import ConnectionContext, forward_request
from dataplane.proxy.http_head import RequestParser, ResponseParser

CONNECTION_NAMES_FRAMING = [
    b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Transfer-Encoding\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Host\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nConnection: X-A, HOST \r\nX-A: 1\r\n\r\n",
]


@pytest.mark.parametrize("head", CONNECTION_NAMES_FRAMING)
def test_a_request_whose_connection_header_names_framing_or_host_is_refused(head: bytes) -> None:
    with pytest.raises(HttpSyntaxError, match="Connection names") as refused:
        RequestParser().parse(head)
    assert refused.value.status == 400


def test_a_response_whose_connection_header_names_its_length_is_a_502() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\n"
    with pytest.raises(HttpSyntaxError, match="Connection names") as refused:
        ResponseParser().parse(head)
    assert refused.value.status == 502


def test_other_listed_headers_are_still_dropped_and_the_framing_kept() -> None:
    head = (
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: TE, X-A\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n"
    )
    request = RequestParser().parse(head)
    context = ConnectionContext(
        ("192.0.2.1", 1), ("127.0.0.1", 80), "http", "Sozu-Id", False, False
    )
    forwarded = RequestParser().parse(forward_request(request, context, b"ID", b""))
    assert (forwarded.host, forwarded.content_length) == (b"a", 2)
    assert b"X-A" not in forwarded.block
