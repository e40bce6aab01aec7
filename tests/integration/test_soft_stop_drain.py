"""A soft stop (worker upgrade, shutdown) loses nothing on kept-alive connections.

A draining worker answers every request that reaches it, the last one with `Connection:
close`; an idle connection may still send one request during a short grace window; after it,
the connection is half-closed (a FIN, then the worker drains what the client still sends), so
no client ever sees a reset or an unanswered request. One worker, so every connection here is
on the worker that drains.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from http_support import SlowBackend

pytestmark = pytest.mark.timeout(60)

REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
CADENCE = 0.01  # seconds between two requests of a client


def _start(pysozu: Any, backends: Any) -> tuple[Any, int]:
    port = pysozu.free_port()
    backend = backends.start("app")
    toml = "worker_count = 1\n" + pysozu.http_config(port, {"app": ("example.com", [backend])})
    return pysozu.start(toml, workers=1), port


def _get(sock: socket.socket) -> tuple[int, bool]:
    """Send one GET, read its whole answer: (status, the answer says `Connection: close`)."""
    sock.sendall(REQUEST)
    return _answer(sock)


def _answer(sock: socket.socket) -> tuple[int, bool]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed before the answer was complete ({len(data)} bytes)")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed in the body")
        body += more
    return int(lines[0].split()[1]), b"connection: close" in lines


@dataclass
class KeepAliveClient:
    """One kept-alive connection at a time, a GET every CADENCE seconds; reconnects after a
    `Connection: close` answer (or stops there, when `stop_at_close`)."""

    port: int
    stop_at_close: bool = False
    answered: int = 0
    closes: int = 0  # answers that said `Connection: close`
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            with socket.create_connection(("127.0.0.1", self.port), 5) as sock:
                while not self.done.is_set():
                    try:
                        status, close = _get(sock)
                    except OSError as error:  # a reset, or a request left unanswered
                        self.errors.append(f"after {self.answered} answers: {error!r}")
                        self.done.set()
                        return
                    self.answered += 1
                    if status != 200:
                        self.errors.append(f"status {status}")
                    if close:
                        self.closes += 1
                        if self.stop_at_close:
                            self.done.set()
                        break
                    time.sleep(CADENCE)

    def stop(self) -> None:
        self.done.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


def test_keep_alive_clients_lose_nothing_across_a_worker_upgrade(
    pysozu: Any, backends: Any
) -> None:
    proxy, port = _start(pysozu, backends)
    clients = [KeepAliveClient(port) for _ in range(8)]
    time.sleep(1.0)
    upgrade = proxy.cli("upgrade", "--worker", "0")
    time.sleep(1.0)
    for client in clients:
        client.stop()
    assert upgrade.returncode == 0, upgrade.stderr
    assert "worker 0 was replaced by worker 1" in upgrade.stdout
    for client in clients:
        assert client.errors == [], client.errors
        assert client.closes >= 1  # told `Connection: close` by the draining worker
        assert client.answered > 20


def test_keep_alive_clients_lose_nothing_across_a_shutdown(pysozu: Any, backends: Any) -> None:
    proxy, port = _start(pysozu, backends)
    clients = [KeepAliveClient(port, stop_at_close=True) for _ in range(8)]
    time.sleep(1.0)
    stop = proxy.cli("shutdown")
    assert stop.returncode == 0, stop.stderr
    assert proxy.process.wait(timeout=10) == 0
    for client in clients:
        assert client.done.wait(5)
        client.stop()
        assert client.errors == [], client.errors
        assert client.closes == 1  # the last answer said `Connection: close`
        assert client.answered > 20


def test_pipelined_requests_read_before_the_stop_are_all_answered(
    pysozu: Any, backends: Any
) -> None:
    slow = SlowBackend(3.0)
    port = pysozu.free_port()
    clusters = {"app": ("example.com", [backends.start("app")]), "slow": ("slow.test", [slow.port])}
    proxy = pysozu.start("worker_count = 1\n" + pysozu.http_config(port, clusters), workers=1)
    with socket.create_connection(("127.0.0.1", port), 10) as client:
        # The second request waits in the session while the first is at the backend.
        client.sendall(b"GET / HTTP/1.1\r\nHost: slow.test\r\n\r\n" * 2)
        assert slow.arrived.wait(10)
        probe = KeepAliveClient(port, stop_at_close=True)
        stop = threading.Thread(target=proxy.cli, args=("shutdown",), daemon=True)
        stop.start()
        assert probe.done.wait(10)  # the worker is stopping: told the probe `close`
        probe.stop()
        assert not slow.answered.is_set(), "the stop began too late to test anything"
        assert _answer(client) == (200, False)  # a request follows: the connection stays
        assert _answer(client) == (200, True)  # the last one says `Connection: close`
        assert client.recv(1) == b""
    assert proxy.process.wait(timeout=10) == 0
    stop.join(10)
    slow.close()


def _silent_connection_and_stop(pysozu: Any, backends: Any) -> tuple[Any, socket.socket]:
    """A connection accepted but silent, then a shutdown; returns once the worker drains
    (a kept-alive probe on the same worker was told `Connection: close`)."""
    proxy, port = _start(pysozu, backends)
    silent = socket.create_connection(("127.0.0.1", port), 5)
    probe = KeepAliveClient(port, stop_at_close=True)
    time.sleep(0.5)  # both accepted by the one worker
    stopping = threading.Thread(target=proxy.cli, args=("shutdown",), daemon=True)
    stopping.start()
    assert probe.done.wait(10)
    probe.stop()
    assert probe.errors == [] and probe.closes == 1, probe.errors
    return proxy, silent


def test_a_silent_connection_may_still_send_its_request(pysozu: Any, backends: Any) -> None:
    proxy, silent = _silent_connection_and_stop(pysozu, backends)
    with silent:
        assert _get(silent) == (200, True)  # answered, and told this was the last one
        assert silent.recv(1) == b""  # then a FIN
    assert proxy.process.wait(timeout=10) == 0


def test_a_connection_silent_through_the_grace_gets_a_fin_not_a_reset(
    pysozu: Any, backends: Any
) -> None:
    proxy, silent = _silent_connection_and_stop(pysozu, backends)
    started = time.monotonic()
    with silent:
        assert silent.recv(1) == b""  # a FIN (a reset would raise)
        assert time.monotonic() - started < 4.0  # the grace (1 s) on a one-second timer wheel
        # A request racing that close is read and dropped, not answered with a reset: a
        # closed socket would reset the first send and make the second one fail.
        silent.sendall(REQUEST)
        time.sleep(0.2)
        silent.sendall(REQUEST)
    assert proxy.process.wait(timeout=10) == 0
