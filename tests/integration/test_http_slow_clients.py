"""Cheap connection holding, through a real pysozu and raw sockets.

A head that can no longer become valid is refused (400) as soon as that is known, while the
head is still incomplete: a bad request line, a TLS ClientHello on a clear-text port, a bad
header line. nginx and HAProxy answer such bytes at once too; pysozu used to wait for the
whole head (or its request timeout: 408 after ~11 s).
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from typing import Any

import pytest
from http_support import Backend, get

pytestmark = pytest.mark.timeout(60)


BUFFER_SIZE = 16_393  # sozu's default buffer_size: the most a request head may take


def start(pysozu: Any, listener: str = "") -> tuple[Any, Backend, int]:
    backend = Backend()
    port = pysozu.free_port()
    toml = pysozu.http_config(port, {"a": ("example.com", [backend.port])})
    toml = toml.replace(
        f'address = "127.0.0.1:{port}"\n', f'address = "127.0.0.1:{port}"\n{listener}', 1
    )
    return pysozu.start(toml, workers=1), backend, port


def answer_of(sock: socket.socket) -> bytes:
    """Everything the proxy sends until it closes."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def client_hello() -> bytes:
    """The first flight of a real TLS client, as it would reach a clear-text port."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="a.example")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    "partial",
    [
        b"GET / HTTP/2.0\r\nHost: exa",  # a version that is not HTTP/1.x
        b"G@T / HTTP/1.1\r\nHost: exa",  # a method that is not a token
        b"GET /a b",  # a third word in the request line, no CRLF yet
        b"GET /\x00",  # a NUL
        b"GET / HTTP/1.1\r\nHost: example.com\r\n folded",  # obs-fold
        b"GET / HTTP/1.1\r\nHost : example.com\r\n",  # a space before the colon
        b"GET / HTTP/1.1\r\nHost: a\rb",  # CR without LF
    ],
)
def test_an_invalid_partial_head_is_refused_at_once(pysozu: Any, partial: bytes) -> None:
    _proxy, backend, port = start(pysozu)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(partial)  # and nothing more: the head stays incomplete
        answer = answer_of(sock)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
        assert time.monotonic() - started < 1.0
    assert not backend.seen


def test_a_tls_client_hello_on_the_clear_text_port_is_refused_at_once(pysozu: Any) -> None:
    proxy, backend, port = start(pysozu)
    hello = client_hello()
    assert hello[:1] == b"\x16"  # a TLS handshake record
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(hello)
        assert answer_of(sock).startswith(b"HTTP/1.1 400 ")
        assert time.monotonic() - started < 1.0
    assert not backend.seen
    metrics = json.loads(proxy.cli("-j", "metrics", "get").stdout)
    proxying = metrics["content"]["content_type"]["METRICS"]["proxying"]
    assert proxying["http.early_rejects"]["inner"]["COUNT"] >= 1


def test_a_head_that_fills_the_buffer_is_refused_at_once(pysozu: Any) -> None:
    _proxy, backend, port = start(pysozu)
    head = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: "
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head + b"b" * (BUFFER_SIZE - len(head)))  # exactly the buffer, no blank line
        assert answer_of(sock).startswith(b"HTTP/1.1 431 ")
        assert time.monotonic() - started < 1.0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /" + b"a" * (BUFFER_SIZE - 5))  # a request line that cannot fit
        assert answer_of(sock).startswith(b"HTTP/1.1 400 ")
    assert not backend.seen


def test_a_valid_head_trickled_byte_by_byte_is_served(pysozu: Any) -> None:
    _proxy, backend, port = start(pysozu)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for byte in get("example.com", extra="Connection: close\r\n"):
            sock.sendall(bytes((byte,)))
        assert answer_of(sock).startswith(b"HTTP/1.1 200 ")
    assert len(backend.seen) == 1
