"""Memory a worker spends on connections, measured from outside as a user would see it.

Clients are raw sockets: each sends one request, reads the answer, then keeps its connection
open. The worker's RSS comes from /proc; the buffers it lends from its Prometheus gauges.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(180)

IDLE = 3000
REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def room_for(connections: int) -> None:
    """This process and the proxy it starts (which inherits the limit) need a descriptor per
    client socket, and the proxy two per proxied connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * connections + 1000
    if soft < wanted:
        assert hard >= wanted, f"the open-file hard limit {hard} is below {wanted}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def gauges(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
    finally:
        connection.close()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.startswith("pysozu_buffer_"):
                found[sample.name] = found.get(sample.name, 0) + sample.value
    return found


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@contextlib.contextmanager
def kept_alive(port: int, count: int, request: bytes = REQUEST) -> Iterator[list[socket.socket]]:
    """`count` connections, each with one request answered, held open for the block."""
    sockets: list[socket.socket] = []
    answered = 0
    try:
        with selectors.DefaultSelector() as selector:
            for _ in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sockets.append(sock)
                selector.register(sock, selectors.EVENT_WRITE, bytearray())
            deadline = time.monotonic() + 60
            while answered < count and time.monotonic() < deadline:
                for key, events in selector.select(1.0):
                    sock = key.fileobj  # type: ignore[assignment]
                    if events & selectors.EVENT_WRITE:
                        sock.sendall(request)
                        selector.modify(sock, selectors.EVENT_READ, key.data)
                        continue
                    data = sock.recv(4096)
                    key.data.extend(data)
                    if not data or b"\r\n\r\n" in key.data:
                        assert key.data.startswith(b"HTTP/1.1 "), bytes(key.data[:64])
                        selector.unregister(sock)
                        answered += 1
        assert answered == count, f"only {answered} of {count} connections answered"
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def start(pysozu: Any, backend: int, extra: str = "") -> tuple[Any, int, int]:
    """One worker; returns the proxy, its HTTP port and its Prometheus port."""
    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    toml = (
        f"worker_count = 1\nmax_connections = 20000\n{extra}\n"
        f'[prometheus]\naddress = "127.0.0.1:{prometheus}"\n\n'
        + pysozu.http_config(listen, {"app": ("example.com", [backend])})
    )
    return pysozu.start(toml, workers=1), listen, prometheus


def test_idle_keep_alive_connections_cost_kilobytes_and_give_memory_back(
    pysozu: Any, backends: Any
) -> None:
    room_for(IDLE)
    proxy, port, prometheus = start(pysozu, backends.start("app-1"))
    worker = proxy.workers()[0].pid
    with kept_alive(port, 10):  # warm: code paths, caches, a first backend connection
        pass
    time.sleep(1.5)
    idle = rss_mb(worker)
    with kept_alive(port, IDLE):
        time.sleep(2.5)  # the tick takes the buffers back from the idle connections
        held = rss_mb(worker)
        figures = gauges(prometheus)
    assert held - idle < 20, f"{IDLE} idle connections grew the worker from {idle} to {held} MB"
    assert figures["pysozu_buffer_in_use"] == 0, figures
    time.sleep(5)
    after = rss_mb(worker)
    assert after <= idle * 1.2 + 8, f"idle {idle} MB, {held} MB held, {after} MB 5 s after"


def test_a_busy_keep_alive_connection_keeps_working_across_the_sweep(
    pysozu: Any, backends: Any
) -> None:
    _, port, prometheus = start(pysozu, backends.start("app-1"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for round_ in range(3):
            for _ in range(50):
                sock.sendall(REQUEST)
                answer = b""
                while not answer.endswith(b"app-1"):
                    chunk = sock.recv(4096)
                    assert chunk, "the proxy closed a kept-alive connection"
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 ")
            if round_ < 2:
                time.sleep(1.2)  # a tick passes between bursts: buffers go and come back
    wait_for(lambda: gauges(prometheus)["pysozu_buffer_in_use"] == 0, 5, "buffers kept")


def test_with_max_buffers_reached_new_requests_wait_and_are_then_served(
    pysozu: Any, backends: Any
) -> None:
    # 4 buffers: 3 for clients, 1 kept for backend responses. Three clients that sent half a
    # head hold the three; a fourth client's request waits, unread, until one comes back.
    _, port, prometheus = start(pysozu, backends.start("app-1"), "max_buffers = 4")
    assert gauges(prometheus)["pysozu_buffer_capacity"] == 4
    partial = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        for sock in partial:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: exa")
        wait_for(lambda: gauges(prometheus)["pysozu_buffer_in_use"] == 3, 5, "not held")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as waiting:
            waiting.sendall(REQUEST)
            waiting.settimeout(1.0)
            with pytest.raises(TimeoutError):
                waiting.recv(4096)  # no buffer: not read, not answered, not refused
            partial[0].sendall(b"mple.com\r\n\r\n")  # completes its head
            assert partial[0].recv(4096).startswith(b"HTTP/1.1 200 ")
            waiting.settimeout(5.0)
            assert waiting.recv(4096).startswith(b"HTTP/1.1 200 ")  # served once freed
    finally:
        for sock in partial:
            sock.close()


class UpgradeBackend:
    """Answers every request with 101 and then holds the connection, silent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.connections: list[socket.socket] = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        while self.running:
            for key, _ in self.selector.select(0.2):
                if key.fileobj is self.listener:
                    with contextlib.suppress(BlockingIOError):
                        conn, _ = self.listener.accept()
                        self.connections.append(conn)
                        self.selector.register(conn, selectors.EVENT_READ)
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                if conn.recv(4096):
                    conn.sendall(
                        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                        b"Upgrade: websocket\r\n\r\n"
                    )
                    self.selector.unregister(conn)

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        for conn in self.connections:
            conn.close()
        self.listener.close()
        self.selector.close()


def test_idle_websocket_pipes_hold_no_buffer(pysozu: Any) -> None:
    room_for(500)
    backend = UpgradeBackend()
    try:
        _, port, prometheus = start(pysozu, backend.port)
        upgrade = (
            b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with kept_alive(port, 500, upgrade) as pipes:
            wait_for(
                lambda: gauges(prometheus)["pysozu_buffer_in_use"] == 0,
                5,
                "idle pipes still hold buffers",
            )
            pipes[0].sendall(b"ping")  # a pipe that speaks again takes a buffer again
            with selectors.DefaultSelector() as selector:
                for conn in backend.connections:
                    selector.register(conn, selectors.EVENT_READ)
                ready = selector.select(5.0)
            assert len(ready) == 1
            assert ready[0][0].fileobj.recv(16) == b"ping"  # type: ignore[union-attr]
    finally:
        backend.close()
