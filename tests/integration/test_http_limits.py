"""Timeouts (one timer wheel), per-IP limits, connect retries and the backend pool."""

from __future__ import annotations

import socket
import time

import pytest
from http_support import Backend, Client, Seen, exchange, get, listening_socket, ok, running_worker

from dataplane.command.messages import Empty, Request
from dataplane.command.responses import ResponseStatus

pytestmark = pytest.mark.timeout(60)


def test_slow_request_head_gets_408() -> None:
    backend = Backend()
    with running_worker({"a": ("example.com", [backend.port])}, request_timeout=1) as (_w, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: exa")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.9 < time.monotonic() - started < 3.5
        sock.close()
    assert not backend.seen


def test_silent_backend_gets_504() -> None:
    def silent(seen: Seen, conn: socket.socket) -> bytes:
        time.sleep(4)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    backend = Backend(silent)
    with running_worker({"a": ("example.com", [backend.port])}, back_timeout=1) as (_w, port):
        started = time.monotonic()
        answer = exchange(port, get("example.com"), timeout=10)
        assert answer.startswith(b"HTTP/1.1 504 ")
        assert time.monotonic() - started < 3.5


def test_idle_keep_alive_connection_is_closed() -> None:
    backend = Backend()
    with running_worker({"a": ("example.com", [backend.port])}, front_timeout=1) as (_w, port):
        client = Client(port, timeout=10)
        assert client.roundtrip(get("example.com"))[0] == 200
        started = time.monotonic()
        assert client.closed()
        assert 0.9 < time.monotonic() - started < 3.5


def test_connect_timeout_moves_on_to_the_next_backend() -> None:
    stuck, stuck_port = socket.socket(), 0
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    stuck_port = stuck.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue: further SYNs are dropped, connects hang
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", stuck_port))
        fillers.append(filler)
    time.sleep(0.2)
    good = Backend(ok(b"good"))
    with running_worker({"a": ("example.com", [stuck_port, good.port])}, connect_timeout=1) as (
        _w,
        port,
    ):
        for _ in range(2):  # whichever the round robin tries first, the answer is good
            started = time.monotonic()
            assert Client(port, timeout=10).roundtrip(get("example.com"))[::2] == (200, b"good")
            assert time.monotonic() - started < 4
    for filler in fillers:
        filler.close()
    stuck.close()


def test_refused_backend_is_retried_on_another() -> None:
    dead_sock, dead_port = listening_socket()
    dead_sock.close()
    good = Backend(ok(b"good"))
    with running_worker({"a": ("example.com", [dead_port, good.port])}) as (_w, port):
        for _ in range(4):
            assert Client(port).roundtrip(get("example.com"))[::2] == (200, b"good")


def test_max_connections_per_ip_answers_429_with_retry_after() -> None:
    backend = Backend()
    with running_worker(
        {"a": ("example.com", [backend.port])},
        cluster_options={"max_connections_per_ip": 2, "retry_after": 7},
    ) as (_w, port):
        held = [Client(port) for _ in range(2)]
        for client in held:
            assert client.roundtrip(get("example.com"))[0] == 200
        answer = exchange(port, get("example.com"))
        assert answer.startswith(b"HTTP/1.1 429 ")
        assert b"Retry-After: 7" in answer
        held[0].close()
        time.sleep(0.3)
        assert Client(port).roundtrip(get("example.com"))[0] == 200


def test_backend_connections_are_pooled_across_clients() -> None:
    backend = Backend()
    with running_worker({"a": ("example.com", [backend.port])}) as (worker, port):
        for _ in range(10):
            client = Client(port)
            assert client.roundtrip(get("example.com"))[0] == 200
            client.close()
            time.sleep(0.05)
        assert backend.connections == 1
        assert worker.call(Request.of(status=Empty())).status == ResponseStatus.OK


def test_pooled_connection_closed_by_backend_is_replayed_transparently() -> None:
    answered = []

    def once(seen: Seen, conn: socket.socket) -> bytes | None:
        answered.append(1)
        if len(answered) == 2:
            return None  # close the kept-alive connection instead of answering
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    backend = Backend(once)  # type: ignore[arg-type]
    with running_worker({"a": ("example.com", [backend.port])}) as (_w, port):
        client = Client(port)
        assert client.roundtrip(get("example.com"))[0] == 200
        assert client.roundtrip(get("example.com"))[::2] == (200, b"ok")
        assert backend.connections == 2
