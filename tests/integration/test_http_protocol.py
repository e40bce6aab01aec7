"""HTTP/1.1 semantics end to end: strictness, keep-alive, pipelining, HEAD, 1xx, upgrades."""

from __future__ import annotations

import codecs
import socket
import time
from pathlib import Path

import pytest
from http_support import Backend, Client, Seen, exchange, get, ok, read_head, running_worker

pytestmark = pytest.mark.timeout(60)

CORPUS = Path(__file__).parent.parent / "unit" / "fixtures" / "http"


def corpus(kind: str, expect: str) -> list[tuple[str, bytes]]:
    cases = []
    for path in sorted(CORPUS.glob(f"{kind}-*.txt")):
        meta, _, raw = path.read_text().partition("\n---\n")
        if f"expect: {expect}" in meta:
            data = codecs.escape_decode("".join(raw.splitlines()).encode())[0]
            cases.append((path.stem, data))
    return cases


def echo_path(seen: Seen, conn: socket.socket) -> bytes:
    path = seen.head.split(b" ")[1]
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path)


@pytest.fixture(scope="module")
def strict_proxy():  # type: ignore[no-untyped-def]
    backend = Backend(echo_path)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        yield backend, port
    backend.close()


@pytest.mark.parametrize(("name", "data"), corpus("request", "400"))
def test_smuggling_shapes_get_400_and_a_closed_connection(strict_proxy, name, data) -> None:  # type: ignore[no-untyped-def]
    backend, port = strict_proxy
    seen_before = len(backend.seen)
    answer = exchange(port, data + get("example.com", "/smuggled"), timeout=5)
    assert answer.startswith(b"HTTP/1.1 400 "), (name, answer[:80])
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert len(body) == length  # then closed: the trailing request was never served
    if "chunk" not in name and "trailer" not in name:
        assert len(backend.seen) == seen_before  # the head was refused before forwarding
    assert all(b"/smuggled" not in seen.head for seen in backend.seen)


@pytest.mark.parametrize(("name", "data"), corpus("response", "502"))
def test_invalid_backend_responses_become_502(name: str, data: bytes) -> None:
    backend = Backend(lambda seen, conn: data)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        answer = exchange(port, get("example.com"), timeout=5)
    assert answer.startswith(b"HTTP/1.1 502 "), (name, answer[:80])


def test_pipelined_requests_are_answered_in_order(strict_proxy) -> None:  # type: ignore[no-untyped-def]
    _backend, port = strict_proxy
    client = Client(port)
    client.send(b"".join(get("example.com", f"/{n}") for n in range(20)))
    assert [client.response()[2] for _ in range(20)] == [f"/{n}".encode() for n in range(20)]


def test_connection_close_from_the_client(strict_proxy) -> None:  # type: ignore[no-untyped-def]
    _backend, port = strict_proxy
    client = Client(port)
    status, head, body = client.roundtrip(get("example.com", "/x", "Connection: close\r\n"))
    assert (status, body) == (200, b"/x")
    assert b"Connection: close" in head
    assert client.closed()


def test_connection_close_from_the_backend_keeps_the_client() -> None:
    backend = Backend(ok(b"bye", "Connection: close\r\n"))
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        client = Client(port)
        for _ in range(3):
            status, head, body = client.roundtrip(get("example.com"))
            assert (status, body) == (200, b"bye")
            assert b"Connection" not in head  # hop-by-hop: the client's connection stays
        assert backend.connections == 3


def test_head_and_bodiless_statuses() -> None:
    def respond(seen: Seen, conn: socket.socket) -> bytes:
        path = seen.head.split(b" ")[1]
        if path == b"/204":
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if path == b"/304":
            return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + (
            b"" if seen.head.startswith(b"HEAD") else b"y" * 50
        )

    backend = Backend(respond)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        client = Client(port)
        status, head, _ = client.roundtrip(b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert status == 200 and b"Content-Length: 50" in head
        assert client.roundtrip(get("example.com", "/204"))[0] == 204
        assert client.roundtrip(get("example.com", "/304"))[0] == 304
        assert client.roundtrip(get("example.com", "/"))[::2] == (200, b"y" * 50)


def test_100_continue_is_relayed_before_the_body() -> None:
    def respond(seen: Seen, conn: socket.socket) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.body), seen.body)

    class ContinueBackend(Backend):
        def _serve(self, conn: socket.socket) -> None:
            pending = bytearray()
            with conn:
                head = read_head(conn, pending)
                assert head is not None and b"Expect: 100-continue" in head
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                while len(pending) < 4:
                    pending += conn.recv(100)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + bytes(pending))

    backend = ContinueBackend(respond)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        client = Client(port)
        client.send(
            b"PUT / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert client.response()[0] == 100
        client.send(b"data")
        assert client.response()[::2] == (200, b"data")


def test_websocket_upgrade_becomes_a_byte_pipe() -> None:
    class EchoUpgrade(Backend):
        def _serve(self, conn: socket.socket) -> None:
            pending = bytearray()
            with conn:
                head = read_head(conn, pending)
                assert head is not None
                assert b"Upgrade: websocket" in head and b"Connection: Upgrade" in head
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\n"
                )
                if pending:
                    conn.sendall(bytes(pending))
                while data := conn.recv(65536):
                    conn.sendall(data)

    backend = EchoUpgrade()
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        client = Client(port)
        client.send(
            b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        status, head, _ = client.response()
        assert status == 101 and b"Upgrade: websocket" in head
        for message in (b"hello", b"\x00\xff binary", b"x" * 200_000):
            client.send(message)
            expected = message
            received = bytes(client.pending)
            client.pending.clear()
            while len(received) < len(expected):
                received += client.sock.recv(65536)
            assert received == expected


def test_101_without_upgrade_request_is_refused() -> None:
    backend = Backend(lambda seen, conn: b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        assert exchange(port, get("example.com")).startswith(b"HTTP/1.1 502 ")


def test_request_head_too_large_is_refused() -> None:
    backend = Backend()
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        big = get("example.com", extra="X-Big: " + "b" * 40_000 + "\r\n")
        answer = exchange(port, big)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert not backend.seen


def test_bare_lf_head_is_refused_without_waiting() -> None:
    backend = Backend()
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        started = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\nHost: example.com\n\n")
        assert sock.recv(12) == b"HTTP/1.1 400"
        assert time.monotonic() - started < 2
        sock.close()


def test_http10_keep_alive_is_confirmed_and_plain_http10_closed(strict_proxy) -> None:  # type: ignore[no-untyped-def]
    _backend, port = strict_proxy
    client = Client(port)
    request = b"GET /k HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"
    for _ in range(2):
        status, head, body = client.roundtrip(request)
        assert (status, body) == (200, b"/k")
        assert b"Connection: keep-alive" in head
    client = Client(port)
    status, head, _ = client.roundtrip(b"GET /c HTTP/1.0\r\nHost: example.com\r\n\r\n")
    assert status == 200 and b"Connection: close" in head
    assert client.closed()
