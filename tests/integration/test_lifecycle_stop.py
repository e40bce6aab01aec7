"""Soft stop drains what is in flight; hard stop does not wait; a drain deadline bounds it."""

from __future__ import annotations

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
