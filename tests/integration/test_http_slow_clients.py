"""Cheap connection holding, through a real pysozu and raw sockets.

- A head that can no longer become valid is refused (400) as soon as that is known, while
  the head is still incomplete: a bad request line, a TLS ClientHello on a clear-text port, a
  bad header line. nginx and HAProxy answer such bytes at once too; pysozu used to wait for
  the whole head (or its request timeout: 408 after ~11 s).
- A request body must come at `request_body_min_rate` bytes/s or more over each
  `request_body_timeout` window (listener settings, pysozu extension), else 408 and close;
  a slow but steady upload is not cut.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
from typing import Any

import pytest
from http_support import Backend, get

pytestmark = pytest.mark.timeout(60)

BODY_LIMITS = "request_body_timeout = 2\nrequest_body_min_rate = 1000\n"


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


def trickle(sock: socket.socket, body: bytes, piece: int, pause: float) -> float:
    """Send `body` in pieces of `piece` bytes every `pause` seconds, while the proxy lets us;
    returns when the proxy answered or closed (as soon as it did, not at the next piece), or
    the body is out."""
    started = time.monotonic()
    for offset in range(0, len(body), piece):
        try:
            sock.sendall(body[offset : offset + piece])
        except OSError:
            break
        sent = time.monotonic()
        if select.select([sock], [], [], pause)[0]:
            break  # an answer, a close or a reset came
        time.sleep(max(0.0, pause - (time.monotonic() - sent)))
    return time.monotonic() - started


def test_a_trickled_body_gets_408_within_the_window(pysozu: Any) -> None:
    proxy, backend, port = start(pysozu, BODY_LIMITS)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n")
        took = trickle(sock, b"x" * 100, 1, 1.0)  # 1 byte per second
        answer = answer_of(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert took < 2 + 1 + 1.5  # the window, the read that ends it, slack
    assert not backend.seen  # the request never completed
    metrics = json.loads(proxy.cli("-j", "metrics", "get").stdout)
    proxying = metrics["content"]["content_type"]["METRICS"]["proxying"]
    assert proxying["http.request_body_timeouts"]["inner"]["COUNT"] == 1


@pytest.mark.timeout(90)
def test_the_default_ends_a_body_sent_one_byte_per_5_seconds(pysozu: Any) -> None:
    """The defaults (500 B/s over 30 s windows) end the trickle of the issue within the
    window plus one gap; nginx (client_body_timeout 60 s between reads) never does."""
    _proxy, backend, port = start(pysozu)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n")
        took = trickle(sock, b"x" * 100, 1, 5.0)
        assert answer_of(sock).startswith(b"HTTP/1.1 408 ")
        assert 29 < took < 30 + 5 + 3
    assert not backend.seen


def test_a_slow_but_steady_upload_is_not_cut(pysozu: Any) -> None:
    _proxy, backend, port = start(pysozu, BODY_LIMITS)
    body = bytes(range(256)) * 1024  # 256 KiB at 64 KiB/s: four seconds, two windows
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode())
        took = trickle(sock, body, 8192, 0.125)
        assert took > 3.5
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert backend.seen[0].body == body


def test_the_body_rate_through_cli_and_listing(pysozu: Any) -> None:
    proxy, backend, port = start(pysozu)
    listing = proxy.cli("listener", "list")
    assert listing.returncode == 0, listing.stderr
    assert "BODY MIN RATE" in listing.stdout and "500 B/s per 30 s" in listing.stdout
    result = proxy.cli(
        "listener", "http", "update", "-a", f"127.0.0.1:{port}",
        "--request-body-timeout", "1", "--request-body-min-rate", "200",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "200 B/s per 1 s" in proxy.cli("listener", "list").stdout
    listed = json.loads(proxy.cli("-j", "listener", "list").stdout)
    http = listed["content"]["content_type"]["LISTENERS_LIST"]["http_listeners"]
    config = http[f"127.0.0.1:{port}"]
    assert (config["request_body_timeout"], config["request_body_min_rate"]) == (1, 200)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 50\r\n\r\n")
        took = trickle(sock, b"y" * 50, 1, 0.5)  # 2 bytes/s
        assert answer_of(sock).startswith(b"HTTP/1.1 408 ")
        assert took < 1 + 0.5 + 1.5
    off = proxy.cli(
        "listener", "http", "update", "-a", f"127.0.0.1:{port}", "--request-body-min-rate", "0"
    )
    assert off.returncode == 0, off.stderr
    assert "off" in proxy.cli("listener", "list").stdout
    assert not backend.seen
