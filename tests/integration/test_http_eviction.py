"""`evict_on_queue_full`: a worker at `max_connections` closes its longest-idle keep-alive
connection to admit one that waits, and otherwise (setting off, or nothing idle) leaves newcomers
in the kernel's backlog. Raw sockets against a real worker."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from http_support import Backend, Client, get, ok, running_worker

from dataplane.command.messages import ServerConfig

pytestmark = pytest.mark.timeout(60)

FULL = ServerConfig(max_connections=2, evict_on_queue_full=True)


def _idle_clients(port: int) -> list[Client]:
    """Two keep-alive clients, each done with one request (the first is the older)."""
    clients = []
    for _ in range(2):
        client = Client(port)
        assert client.roundtrip(get("a.example"))[0] == 200
        clients.append(client)
        time.sleep(0.05)
    return clients


def test_a_waiting_connection_evicts_the_longest_idle_one() -> None:
    backend = Backend(ok(b"app"))
    with running_worker({"a": ("a.example", [backend.port])}, FULL) as (_worker, port):
        older, newer = _idle_clients(port)
        newcomer = Client(port)
        status, _, body = newcomer.roundtrip(get("a.example"))
        assert (status, body) == (200, b"app")  # admitted at once
        older.sock.settimeout(2)
        assert older.closed()  # idle the longest: evicted
        assert newer.roundtrip(get("a.example"))[0] == 200  # the other one stays
        for client in (newer, newcomer):
            client.close()
    backend.close()


def test_no_eviction_when_no_connection_waits() -> None:
    backend = Backend(ok(b"app"))
    with running_worker({"a": ("a.example", [backend.port])}, FULL) as (_worker, port):
        clients = _idle_clients(port)
        time.sleep(0.3)
        for client in clients:  # full, nobody knocking: both kept
            assert client.roundtrip(get("a.example"))[0] == 200
            client.close()
    backend.close()


def test_busy_connections_are_never_evicted_the_newcomer_waits() -> None:
    backend = Backend(ok(b"app"))
    with running_worker({"a": ("a.example", [backend.port])}, FULL) as (_worker, port):
        busy = [Client(port) for _ in range(2)]
        for client in busy:
            client.send(b"GET / HTTP/1.1\r\n")  # a request head started: not idle
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=1)
        extra.sendall(get("a.example"))
        extra.settimeout(0.5)
        with pytest.raises(TimeoutError):
            extra.recv(1)  # in the backlog
        for client in busy:
            client.close()
        extra.settimeout(5)
        assert extra.recv(12) == b"HTTP/1.1 200"
        extra.close()
    backend.close()


def test_without_the_setting_idle_connections_are_kept_and_newcomers_wait() -> None:
    backend = Backend(ok(b"app"))
    config = ServerConfig(max_connections=2)
    with running_worker({"a": ("a.example", [backend.port])}, config) as (_worker, port):
        clients = _idle_clients(port)
        extra = socket.create_connection(("127.0.0.1", port), timeout=1)
        extra.sendall(get("a.example"))
        extra.settimeout(0.5)
        with pytest.raises(TimeoutError):
            extra.recv(1)
        for client in clients:
            assert client.roundtrip(get("a.example"))[0] == 200
            client.close()
        extra.close()
    backend.close()


def test_evict_on_queue_full_from_the_toml_of_a_running_pysozu(pysozu: Any, backends: Any) -> None:
    listen = pysozu.free_port()
    toml = "worker_count = 1\nmax_connections = 2\nevict_on_queue_full = true\n" + (
        pysozu.http_config(listen, {"a": ("a.example", [backends.start("app-1")])})
    )
    proxy = pysozu.start(toml, workers=1)
    older, newer = _idle_clients(listen)
    newcomer = Client(listen)
    assert newcomer.roundtrip(get("a.example"))[0] == 200
    older.sock.settimeout(2)
    assert older.closed()
    assert "evict_on_queue_full" not in proxy.log()  # implemented: no warning
    for client in (newer, newcomer):
        client.close()
