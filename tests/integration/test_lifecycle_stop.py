"""Soft stop drains what is in flight; hard stop does not wait; a drain deadline bounds it."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from http_support import SlowBackend

pytestmark = pytest.mark.timeout(60)

SLOW = 2.0


@pytest.fixture
def slow_backend() -> Iterator[SlowBackend]:
    backend = SlowBackend(SLOW)
    yield backend
    backend.close()


def _slow_request(pysozu: Any, port: int) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def request() -> None:
        try:
            result.append(pysozu.http_get(port, timeout=10))
        except OSError as error:
            result.append(error)

    thread = threading.Thread(target=request)
    thread.start()
    return thread, result


def _start(pysozu: Any, backend: SlowBackend) -> tuple[Any, int]:
    port = pysozu.free_port()
    proxy = pysozu.start(pysozu.http_config(port, {"slow": ("example.com", [backend.port])}))
    return proxy, port


def test_soft_stop_waits_for_the_request_in_flight(pysozu: Any, slow_backend: SlowBackend) -> None:
    proxy, port = _start(pysozu, slow_backend)
    thread, result = _slow_request(pysozu, port)
    assert slow_backend.arrived.wait(10)
    started = time.monotonic()
    stop = proxy.cli("shutdown")
    assert stop.returncode == 0, stop.stderr
    assert "Proxy stopped gracefully" in stop.stdout
    assert proxy.process.wait(timeout=10) == 0
    elapsed = time.monotonic() - started
    thread.join(10)
    assert result == [(200, b"slow")]
    assert elapsed > SLOW * 0.5, f"main exited after {elapsed:.2f} s, before the answer"
    with pytest.raises(OSError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), 1).close()


def test_sigterm_is_a_soft_stop(pysozu: Any, slow_backend: SlowBackend) -> None:
    proxy, port = _start(pysozu, slow_backend)
    thread, result = _slow_request(pysozu, port)
    assert slow_backend.arrived.wait(10)
    proxy.process.terminate()
    assert proxy.process.wait(timeout=10) == 0
    thread.join(10)
    assert result == [(200, b"slow")]


def test_while_draining_new_connections_are_refused_not_left_waiting(
    pysozu: Any, slow_backend: SlowBackend
) -> None:
    """`docker stop`: a request in flight is finished, and a client arriving meanwhile is
    refused at once (it can go to another replica) instead of waiting for an answer that
    comes from nobody, until the process exits and its connection is reset."""
    proxy, port = _start(pysozu, slow_backend)
    thread, result = _slow_request(pysozu, port)
    assert slow_backend.arrived.wait(10)
    proxy.process.terminate()
    time.sleep(0.5)  # main and both workers have had the stop
    assert proxy.process.poll() is None  # still draining the request in flight
    started = time.monotonic()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), 5) as late,
    ):
        late.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        late.settimeout(5)
        late.recv(1024)
    assert time.monotonic() - started < 1
    assert proxy.process.wait(timeout=10) == 0
    thread.join(10)
    assert result == [(200, b"slow")]


def test_a_connection_queued_before_the_stop_is_served(pysozu: Any, backends: Any) -> None:
    """What the kernel had queued when the stop came is accepted and answered, not reset."""
    port = pysozu.free_port()
    proxy = pysozu.start(
        "worker_count = 1\n"
        + pysozu.http_config(port, {"app": ("example.com", [backends.start("app-1")])}),
        workers=1,
    )
    worker = proxy.workers()[0].pid
    os.kill(worker, signal.SIGSTOP)  # the worker accepts nothing while frozen: clients queue
    try:
        queued = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(5)]
        for sock in queued:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        proxy.process.terminate()
        time.sleep(0.5)  # main has closed its copy of the listening socket
    finally:
        os.kill(worker, signal.SIGCONT)
    for sock in queued:
        sock.settimeout(5)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert b"app-1" in answer
        sock.close()
    assert proxy.process.wait(timeout=10) == 0


def test_hard_stop_does_not_wait(pysozu: Any, slow_backend: SlowBackend) -> None:
    proxy, port = _start(pysozu, slow_backend)
    thread, result = _slow_request(pysozu, port)
    assert slow_backend.arrived.wait(10)
    started = time.monotonic()
    stop = proxy.cli("shutdown", "--hard")
    assert stop.returncode == 0, stop.stderr
    assert proxy.process.wait(timeout=10) == 0
    assert time.monotonic() - started < SLOW
    thread.join(10)
    assert result and result[0] != (200, b"slow")


def test_a_drain_deadline_bounds_the_soft_stop(pysozu: Any) -> None:
    backend = SlowBackend(30.0)
    try:
        proxy, port = _start(pysozu, backend)
        thread, result = _slow_request(pysozu, port)
        assert backend.arrived.wait(10)
        started = time.monotonic()
        stop = proxy.cli("shutdown", "--deadline", "1")
        assert stop.returncode == 0, stop.stderr
        assert "drain deadline of 1 s reached" in stop.stdout
        assert proxy.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 8
        thread.join(10)
        assert result and result[0] != (200, b"slow")
    finally:
        backend.close()
