"""HTTP/2 request semantics through a running pysozu, with raw frames over TLS.

Ports sozu's h2_security_tests / h2_security_header_injection / h2_tests request scenarios
(mapping: docs/testing-h2.md): malformed heads are stream errors that leave the connection
serving and never reach a backend; Content-Length is enforced; cookies, HEAD, 1xx, trailers,
large headers; several clusters, a dead cluster and a backend that hangs up on one connection;
50 concurrent streams without crosstalk to an HTTP/1.1 and to an h2c backend.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from h2_support import EchoBackend, tls_config
from h2_wire import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PROTOCOL_ERROR,
    Wire,
    block,
    frame,
    request_fields,
)
from h2c_backend import H2cBackend
from https_support import Pki

pytestmark = pytest.mark.timeout(120)

HOSTS = ("example.com", "down.example.com", "cut.example.com", "h2c.example.com")


def _hang_up_backend() -> tuple[socket.socket, int]:
    """A backend that reads a request and closes without answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.recv(65536)
            sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.fixture
def proxy(pysozu: Any, tmp_path: Path) -> Iterator[tuple[int, Pki, H2cBackend]]:
    echo, h2c = EchoBackend(), H2cBackend()
    hang_up, cut_port = _hang_up_backend()
    try:
        pki = Pki(tmp_path)
        cert = pki.issue(*HOSTS)
        port = pysozu.free_port()
        extra = ""
        for cluster, host, backend, http2 in (
            ("down", HOSTS[1], pysozu.free_port(), "false"),
            ("cut", HOSTS[2], cut_port, "false"),
            ("grpcish", HOSTS[3], h2c.port, "true"),
        ):
            extra += f"""
[clusters.{cluster}]
protocol = "http"
http2 = {http2}
backends = [{{ address = "127.0.0.1:{backend}" }}]
[[clusters.{cluster}.frontends]]
address = "127.0.0.1:{port}"
hostname = "{host}"
certificate = "{cert["certificate"]}"
key = "{cert["key"]}"
"""
        pysozu.start(tls_config(port, echo.port, cert) + extra, workers=1)
        yield port, pki, h2c
    finally:
        echo.stop()
        h2c.stop()
        hang_up.close()


def _head(stream: int, fields: list[tuple[bytes, bytes]], end: bool = True) -> bytes:
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream, block(fields))


_BASE = request_fields("/malformed")
# name -> the request's fields; each must be refused on its stream (RFC 9113 8.2, 8.3)
MALFORMED: dict[str, list[tuple[bytes, bytes]]] = {
    "missing :method": _BASE[1:],
    "missing :path": _BASE[:3],
    "missing :scheme": [_BASE[0], *_BASE[2:]],
    "duplicate :path": [*_BASE, (b":path", b"/other")],
    "pseudo after a regular field": [*_BASE[:3], (b"x-a", b"1"), _BASE[3]],
    "unknown pseudo field": [*_BASE, (b":foo", b"bar")],
    "response pseudo field": [*_BASE, (b":status", b"200")],
    "uppercase name": [*_BASE, (b"X-Upper", b"1")],
    "empty name": [*_BASE, (b"", b"1")],
    "space in a name": [*_BASE, (b"x a", b"1")],
    "connection field": [*_BASE, (b"connection", b"keep-alive")],
    "keep-alive field": [*_BASE, (b"keep-alive", b"timeout=5")],
    "transfer-encoding field": [*_BASE, (b"transfer-encoding", b"chunked")],
    "upgrade field": [*_BASE, (b"upgrade", b"websocket")],
    "te other than trailers": [*_BASE, (b"te", b"gzip")],
    "CRLF in a value": [*_BASE, (b"x-a", b"1\r\nx-injected: 1")],
    "LF in a value": [*_BASE, (b"x-a", b"1\nx-injected: 1")],
    "NUL in a value": [*_BASE, (b"x-a", b"1\x00")],
    "CRLF in :authority": [*_BASE[:2], (b":authority", b"example.com\r\nx: 1"), _BASE[3]],
    "empty :path": [*_BASE[:3], (b":path", b"")],
    ":path without a slash": [*_BASE[:3], (b":path", b"relative")],
    ":path with a fragment": [*_BASE[:3], (b":path", b"/a#b")],
    ":path with a space": [*_BASE[:3], (b":path", b"/a b")],
    "invalid :scheme": [_BASE[0], (b":scheme", b"ftp"), *_BASE[2:]],
    "host not :authority": [*_BASE, (b"host", b"other.example.com")],
    "content-length with END_STREAM": [*_BASE, (b"content-length", b"5")],
}


def test_malformed_heads_are_refused_on_their_stream_only(
    proxy: tuple[int, Pki, H2cBackend],
) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    wrong: dict[str, object] = {}
    try:
        stream = 1
        for name, fields in MALFORMED.items():
            wire.send(_head(stream, fields))
            code = wire.reset_code(stream, timeout=3)
            if code is None:  # an answer from the proxy itself is fine, a backend's is not
                status = wire.heads.get(stream, [(b":status", b"none")])
                if dict(status).get(b":status", b"")[:1] != b"4":
                    wrong[name] = status
            elif code != PROTOCOL_ERROR:
                wrong[name] = ("reset code", code)
            stream += 2
        wire.send(_head(stream, request_fields("/fine")))
        assert wire.response(stream)[0] == 200  # the connection served on
    finally:
        wire.close()
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("declared", "sent"), [(b"10", b"12345"), (b"3", b"12345"), (b"0", b"x")], ids=str
)
def test_a_body_that_disagrees_with_content_length_is_refused(
    proxy: tuple[int, Pki, H2cBackend], declared: bytes, sent: bytes
) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        fields = [*request_fields("/cl", "POST"), (b"content-length", declared)]
        wire.send(_head(1, fields, end=False), frame(DATA, END_STREAM, 1, sent))
        assert wire.reset_code(1) == PROTOCOL_ERROR
        wire.send(_head(3, request_fields("/fine")))
        assert wire.response(3)[0] == 200
    finally:
        wire.close()


def test_conflicting_content_lengths_end_the_connection(
    proxy: tuple[int, Pki, H2cBackend],
) -> None:
    """h2 checks these itself, as a connection error (fails closed; RFC 9113 would allow a
    stream error): GOAWAY(PROTOCOL_ERROR), and the proxy serves the next connection."""
    port, pki, _ = proxy
    for lengths in ((b"1", b"2"), (b"12a",)):
        wire = Wire(port, pki.client_context())
        try:
            fields = [*request_fields("/cl"), *((b"content-length", n) for n in lengths)]
            wire.send(_head(1, fields))
            assert wire.goaway() == (1, PROTOCOL_ERROR)
        finally:
            wire.close()
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_head(1, request_fields("/fine")))
        assert wire.response(1)[0] == 200
    finally:
        wire.close()


def test_cookies_head_trailers_te_and_large_headers(proxy: tuple[int, Pki, H2cBackend]) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        cookies = [(b"cookie", b"a=1"), (b"x-b", b"2"), (b"cookie", b"b=2"), (b"te", b"trailers")]
        wire.send(_head(1, [*request_fields("/cookies"), *cookies]))
        seen = json.loads(wire.response(1)[2])
        assert ["cookie", "a=1; b=2"] in seen["headers"], seen  # crumbs joined for HTTP/1.1
        wire.send(_head(3, request_fields("/big/5000", "HEAD")))
        status, fields, body = wire.response(3)
        assert (status, fields[b"content-length"], body) == (200, b"5000", b"")
        fields = [*request_fields("/trailers", "POST"), (b"te", b"trailers")]
        trailers = block([(b"x-sum", b"abc")])
        wire.send(_head(5, fields, end=False), frame(DATA, 0, 5, b"hello"))
        wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, trailers))
        assert json.loads(wire.response(5)[2])["length"] == 5
        big = b"v" * 12_000  # more than one frame: HEADERS + CONTINUATION
        encoded = block([*request_fields("/large-header"), (b"x-large", big)])
        wire.send(
            frame(HEADERS, 0, 7, encoded[:8000]),
            frame(CONTINUATION, END_HEADERS, 7, encoded[8000:]),
            frame(DATA, END_STREAM, 7, b""),
        )
        seen = json.loads(wire.response(7)[2])
        assert ["x-large", big.decode()] in seen["headers"]
    finally:
        wire.close()


def test_expect_100_continue_gets_the_interim_answer(proxy: tuple[int, Pki, H2cBackend]) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        fields = [*request_fields("/upload", "POST"), (b"expect", b"100-continue")]
        wire.send(_head(1, [*fields, (b"content-length", b"4")], end=False))
        assert wire.wait(lambda f: f.kind == HEADERS and f.stream == 1) is not None
        assert (b":status", b"100") in wire.heads[1]
        wire.send(frame(DATA, END_STREAM, 1, b"body"))
        status, _, body = wire.response(1)
        assert status == 200 and json.loads(body)["length"] == 4
    finally:
        wire.close()


def test_one_connection_reaches_several_clusters_dead_and_cut_ones_included(
    proxy: tuple[int, Pki, H2cBackend],
) -> None:
    port, pki, h2c = proxy
    wire = Wire(port, pki.client_context())
    try:
        for stream, host, expected in (
            (1, HOSTS[0], 200),
            (3, HOSTS[1], 503),  # every backend refuses: 503
            (5, HOSTS[2], 502),  # the backend hangs up: 502
            (7, HOSTS[3], 200),  # h2c backend
            (9, HOSTS[0], 200),
        ):
            wire.send(_head(stream, request_fields(f"/{stream}", host=host)))
            assert wire.response(stream)[0] == expected, host
        assert [dict(head)[b":path"] for head, _ in h2c.requests] == [b"/7"]
    finally:
        wire.close()


@pytest.mark.parametrize("host", [HOSTS[0], HOSTS[3]], ids=["h1-backend", "h2c-backend"])
def test_fifty_concurrent_streams_get_their_own_answers(
    proxy: tuple[int, Pki, H2cBackend], host: str
) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        streams = range(1, 101, 2)
        wire.send(*[_head(s, request_fields(f"/n/{s}", host=host)) for s in streams])
        for stream in streams:
            status, _, body = wire.response(stream)
            assert status == 200 and json.loads(body)["path"] == f"/n/{stream}"
    finally:
        wire.close()
