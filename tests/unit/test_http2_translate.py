"""translate: HTTP/2 heads to HTTP/1.1 and back, one rule per test."""

from __future__ import annotations

import pytest

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.head import RequestParser, ResponseParser
from dataplane.proxy.http2 import RequestHead, ResponseHead, translate
from dataplane.proxy.http2.translate import (
    backend_response,
    chunk,
    h1_request_to_h2,
    h1_response_to_h2,
    h2_informational_to_h1,
    h2_request_to_h1,
    h2_response_to_h1,
    last_chunk,
)


def h2_request(
    headers: list[tuple[bytes, bytes]] | None = None,
    method: bytes = b"GET",
    end_stream: bool = True,
    length: int | None = None,
) -> RequestHead:
    return RequestHead(
        1, method, b"https", b"example.com", b"/p?q=1", headers or [], end_stream, length
    )


def test_request_head_is_parsed_back_by_the_http1_parser() -> None:
    head, chunked = h2_request_to_h1(h2_request([(b"accept", b"*/*")]))
    assert head == b"GET /p?q=1 HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\n\r\n"
    assert not chunked
    parsed = RequestParser().parse(head)
    assert parsed.host == b"example.com" and parsed.path == "/p?q=1"


def test_cookies_are_joined_where_the_first_crumb_was() -> None:
    fields = [(b"cookie", b"a=1"), (b"x-b", b"2"), (b"cookie", b"c=3")]
    head, _ = h2_request_to_h1(h2_request(fields))
    assert b"\r\ncookie: a=1; c=3\r\nx-b: 2\r\n" in head
    assert RequestParser().parse(head).cookies


def test_host_that_disagrees_with_authority_is_refused() -> None:
    with pytest.raises(HttpSyntaxError) as error:
        h2_request_to_h1(h2_request([(b"host", b"evil.test")]))
    assert error.value.status == 400
    head, _ = h2_request_to_h1(h2_request([(b"host", b"EXAMPLE.COM")]))
    assert head.count(b"host:") == 1


def test_connection_specific_fields_and_te_are_dropped() -> None:
    fields = [(b"te", b"trailers"), (b"connection", b"x"), (b"upgrade", b"h2c"), (b"x-k", b"v")]
    head, _ = h2_request_to_h1(h2_request(fields))
    assert head == b"GET /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-k: v\r\n\r\n"


def test_request_body_framing() -> None:
    with_length, chunked = h2_request_to_h1(
        h2_request([(b"content-length", b"5")], b"POST", False, 5)
    )
    assert b"content-length: 5" in with_length and not chunked
    unknown, chunked = h2_request_to_h1(h2_request(method=b"POST", end_stream=False))
    assert unknown.endswith(b"transfer-encoding: chunked\r\n\r\n") and chunked
    assert RequestParser().parse(unknown).chunked
    empty, chunked = h2_request_to_h1(h2_request(method=b"POST"))
    assert empty.endswith(b"content-length: 0\r\n\r\n") and not chunked
    get, _ = h2_request_to_h1(h2_request())
    assert b"content-length" not in get


def test_chunks_and_trailers() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"") == b""
    assert last_chunk() == b"0\r\n\r\n"
    trailers = [(b"grpc-status", b"0"), (b"content-length", b"9"), (b"authorization", b"x")]
    assert last_chunk(trailers) == b"0\r\ngrpc-status: 0\r\n\r\n"  # forbidden ones dropped


def test_response_to_http1() -> None:
    head, chunked = h2_response_to_h1(ResponseHead(1, 200, [(b"x-a", b"1")], False), b"GET")
    assert head == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    assert chunked and ResponseParser().parse(head).chunked
    sized, chunked = h2_response_to_h1(
        ResponseHead(1, 200, [(b"content-length", b"3")], False, 3), b"GET"
    )
    assert not chunked and ResponseParser().parse(sized).content_length == 3
    empty, _ = h2_response_to_h1(ResponseHead(1, 200, [], True), b"GET")
    assert empty.endswith(b"content-length: 0\r\n\r\n")
    for status, method in ((204, b"GET"), (304, b"GET"), (200, b"HEAD")):
        bodyless, chunked = h2_response_to_h1(ResponseHead(1, status, [], True), method)
        assert b"content-length" not in bodyless and not chunked
    old, chunked = h2_response_to_h1(ResponseHead(1, 200, [], False), b"GET", keep_alive=False)
    assert old.endswith(b"connection: close\r\n\r\n") and not chunked
    assert h2_informational_to_h1(100, []) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert h2_informational_to_h1(103, [(b"link", b"</a>")]).startswith(b"HTTP/1.1 103 Early")


def test_http1_request_to_h2() -> None:
    head = (
        b"POST /up HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, x-hop\r\n"
        b"X-Hop: 1\r\nCookie: a=1; b=2\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n"
        b"Keep-Alive: 5\r\nUpgrade: h2c\r\nContent-Type: text/plain\r\n\r\n"
    )
    request = RequestParser().parse(head)
    method, scheme, authority, path, fields = h1_request_to_h2(request, b"http")
    assert (method, scheme, authority, path) == (b"POST", b"http", b"example.com", b"/up")
    # TE is hop-by-hop in HTTP/1.1: the parser already dropped it, with the Connection-named.
    assert fields == [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"content-type", b"text/plain")]


def test_http1_response_to_h2() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, x-hop\r\nX-Hop: 1\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nKeep-Alive: 5\r\n\r\n"
    )
    response = ResponseParser().parse(head)
    status, fields, end = h1_response_to_h2(response, b"GET")
    assert status == 200 and not end
    assert fields == [(b"content-length", b"2"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    _, _, end = h1_response_to_h2(response, b"HEAD")
    assert end
    chunked = ResponseParser().parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert h1_response_to_h2(chunked, b"GET") == (200, [], False)
    no_content = ResponseParser().parse(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert h1_response_to_h2(no_content, b"GET")[2]
    early = ResponseParser().parse(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
    assert h1_response_to_h2(early, b"GET") == (103, [(b"link", b"</a>")], False)
    upgrade = ResponseParser().parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n")
    with pytest.raises(HttpSyntaxError):
        h1_response_to_h2(upgrade, b"GET")


def test_a_backend_head_is_parsed_once_and_its_fields_copied() -> None:
    parser = ResponseParser()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    response, status, fields = backend_response(parser, head, b"GET")
    assert (status, fields) == (200, [(b"content-type", b"text/plain"), (b"content-length", b"5")])
    fields.append((b"x-added", b"by the stream"))
    again, status, fields = backend_response(parser, head, b"GET")
    assert again is response and len(fields) == 2
    assert response.framing(b"HEAD") != response.framing(b"GET")
    with pytest.raises(HttpSyntaxError):
        backend_response(parser, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", b"GET")
    with pytest.raises(HttpSyntaxError):
        backend_response(parser, b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b"GET")


def test_the_backend_head_cache_is_bounded() -> None:
    parser = ResponseParser()
    for n in range(translate.MAX_HEADS + 10):
        head = b"HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: 0\r\n\r\n" % n
        assert backend_response(parser, head, b"GET")[2] == [
            (b"x-n", b"%d" % n),
            (b"content-length", b"0"),
        ]
    assert len(translate._heads) <= translate.MAX_HEADS
