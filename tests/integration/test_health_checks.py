"""Active health checks, black-box: a real pysozu and backends whose health can be switched.

sozu's test_health_check_{excludes_unhealthy, recovery, remove, fail_open, invalid_config,
expected_status} scenarios, a backend that accepts connections and never answers (only the
probe's timeout finds it), TCP connect checks, events and metrics.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dataplane.command.responses import EventKind

pytestmark = pytest.mark.timeout(120)

FAST = "interval = 1\ntimeout = 1\nhealthy_threshold = 2\nunhealthy_threshold = 2\n"


class Backend:
    """An HTTP backend answering its name on `/`, and `health_status` on `/health`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health_status = 200
        self.probes = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    owner.probes += 1
                    status, body = owner.health_status, b"health"
                else:
                    status, body = 200, owner.name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_backends() -> Iterator[Callable[[str], Backend]]:
    started: list[Backend] = []

    def start(name: str) -> Backend:
        started.append(Backend(name))
        return started[-1]

    yield start
    for backend in started:
        backend.close()


def config(port: int, ports: list[int], check: str = FAST, extra: str = "") -> str:
    entries = ", ".join(
        f'{{ address = "127.0.0.1:{p}", backend_id = "b{n}" }}' for n, p in enumerate(ports)
    )
    table = f'[clusters.app.health_check]\nuri = "/health"\n{check}' if check else ""
    return (
        f'worker_count = 1\n{extra}\n[[listeners]]\nprotocol = "http"\n'
        f'address = "127.0.0.1:{port}"\n'
        f'[clusters.app]\nprotocol = "http"\nload_balancing = "ROUND_ROBIN"\n'
        f'frontends = [{{ address = "127.0.0.1:{port}", hostname = "app.com" }}]\n'
        f"backends = [{entries}]\n{table}"
    )


def bodies(pysozu: Any, port: int, count: int = 8) -> set[bytes]:
    seen = set()
    for _ in range(count):
        status, body = pysozu.http_get(port, "app.com")
        assert status == 200, (status, body)
        seen.add(body)
    return seen


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def metrics(proxy: Any, prefix: str = "health_check.") -> dict[str, int]:
    result = proxy.cli("-j", "metrics", "get")
    assert result.returncode == 0, result.stderr
    found: dict[str, int] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.startswith(prefix) and isinstance(value, dict):
                    inner = value.get("inner", value)
                    number = inner.get("COUNT", inner.get("GAUGE"))
                    if isinstance(number, int):
                        found[key] = found.get(key, 0) + number
                        continue
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(result.stdout)["content"]["content_type"]["METRICS"]["proxying"])
    return found


def events(proxy: Any) -> Any:
    from test_observability_events import Watcher

    return Watcher(proxy)


def test_an_unhealthy_backend_leaves_rotation_and_comes_back(
    pysozu: Any, http_backends: Callable[[str], Backend]
) -> None:
    a, b = http_backends("a"), http_backends("b")
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, [a.port, b.port]), workers=1)
    watcher = events(proxy)
    try:
        assert bodies(pysozu, port) == {b"a", b"b"}
        b.health_status = 500
        unhealthy = watcher.wait_for(EventKind.HEALTH_CHECK_UNHEALTHY, timeout=15)
        assert unhealthy is not None and unhealthy["backend_id"] == "b1"
        down = watcher.wait_for(EventKind.BACKEND_DOWN, timeout=5)
        assert down is not None and down["backend_id"] == "b1"
        assert bodies(pysozu, port) == {b"a"}  # b answers requests fine: only the check says no
        listed = proxy.cli("backend", "list", "-d", "app.com").stdout.splitlines()
        assert [line.split()[1::4] for line in listed] == [
            ["BACKEND", "HEALTH"],
            ["b0", "healthy"],
            ["b1", "unhealthy"],
        ]
        b.health_status = 200
        healthy = watcher.wait_for(EventKind.HEALTH_CHECK_HEALTHY, timeout=15)
        assert healthy is not None and healthy["backend_id"] == "b1"
        assert bodies(pysozu, port) == {b"a", b"b"}
    finally:
        watcher.close()
    found = metrics(proxy)
    assert found["health_check.down"] == 1 and found["health_check.up"] == 1
    assert found["health_check.failure"] >= 2 and found["health_check.success"] >= 2
    assert found["health_check.healthy_backends"] == 2


def test_removing_the_check_puts_backends_back(
    pysozu: Any, http_backends: Callable[[str], Backend]
) -> None:
    a, b = http_backends("a"), http_backends("b")
    b.health_status = 503
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, [a.port, b.port]), workers=1)
    wait_until(lambda: metrics(proxy).get("health_check.down") == 1)
    assert bodies(pysozu, port) == {b"a"}
    listed = proxy.cli("-j", "cluster", "health-check", "list")
    assert listed.returncode == 0 and '"/health"' in listed.stdout
    result = proxy.cli("cluster", "health-check", "remove", "-i", "app")
    assert result.returncode == 0, result.stderr
    assert bodies(pysozu, port) == {b"a", b"b"}
    probes = b.probes
    time.sleep(2.5)
    assert b.probes == probes  # no check, no probe


def test_a_check_set_at_run_time_with_an_expected_status(
    pysozu: Any, http_backends: Callable[[str], Backend]
) -> None:
    a, b = http_backends("a"), http_backends("b")
    a.health_status = b.health_status = 200
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, [a.port, b.port], check=""), workers=1)
    b.health_status = 204
    result = proxy.cli(
        "cluster", "health-check", "set", "-i", "app", "-u", "/health", "--interval", "1",
        "--timeout", "1", "--healthy-threshold", "1", "--unhealthy-threshold", "1",
        "--expected-status", "204",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # a answers 200, not the expected 204: a is the one taken out
    wait_until(lambda: bodies(pysozu, port) == {b"b"})
    a.health_status = 204
    wait_until(lambda: bodies(pysozu, port) == {b"a", b"b"})


def test_invalid_checks_are_refused(pysozu: Any, http_backends: Callable[[str], Backend]) -> None:
    a = http_backends("a")
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, [a.port], check=""), workers=1)
    for argv in (
        ("-u", "health"),
        ("-u", "/health", "--interval", "0"),
        ("-u", "/health", "--healthy-threshold", "0"),
    ):
        result = proxy.cli("cluster", "health-check", "set", "-i", "app", *argv)
        assert result.returncode == 1, argv
        assert "health check of cluster app" in result.stderr, result.stderr
    result = proxy.cli("cluster", "health-check", "set", "-i", "nope", "-u", "/h")
    assert result.returncode == 1


def test_every_backend_unhealthy_fails_open(
    pysozu: Any, http_backends: Callable[[str], Backend]
) -> None:
    a, b = http_backends("a"), http_backends("b")
    a.health_status = b.health_status = 500
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, [a.port, b.port]), workers=1)
    watcher = events(proxy)
    try:
        none_left = watcher.wait_for(EventKind.NO_AVAILABLE_BACKENDS, timeout=15)
        assert none_left is not None and none_left["cluster_id"] == "app"
    finally:
        watcher.close()
    assert metrics(proxy)["health_check.healthy_backends"] == 0
    assert bodies(pysozu, port) == {b"a", b"b"}  # fail-open: served rather than 503


def test_a_backend_that_never_answers_is_found_by_the_probe_timeout(
    pysozu: Any, http_backends: Callable[[str], Backend]
) -> None:
    a = http_backends("a")
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)  # accepts, never answers
    try:
        port = pysozu.free_port()
        proxy = pysozu.start(config(port, [a.port, silent.getsockname()[1]]), workers=1)
        wait_until(lambda: metrics(proxy).get("health_check.down") == 1)
        for _ in range(4):  # requests are not sent to the silent backend any more
            assert pysozu.http_get(port, "app.com") == (200, b"a")
    finally:
        silent.close()


def test_a_tcp_cluster_gets_connect_checks(pysozu: Any) -> None:
    live = socket.create_server(("127.0.0.1", 0), backlog=64)
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    try:
        port = pysozu.free_port()
        toml = (
            f'worker_count = 1\n[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:{port}"\n'
            f'[clusters.t]\nprotocol = "tcp"\nfrontends = [{{ address = "127.0.0.1:{port}" }}]\n'
            f'backends = [{{ address = "127.0.0.1:{live.getsockname()[1]}", backend_id = "l" }},'
            f' {{ address = "127.0.0.1:{dead_port}", backend_id = "d" }}]\n'
            f'[clusters.t.health_check]\nuri = "/"\n{FAST}'
        )
        proxy = pysozu.start(toml, workers=1)
        wait_until(lambda: metrics(proxy).get("health_check.success", 0) >= 4)
        assert metrics(proxy).get("health_check.down", 0) == 0  # connects pass: no HTTP asked
        dead.close()  # refused from now on
        wait_until(lambda: metrics(proxy).get("health_check.down") == 1)
        assert metrics(proxy)["health_check.healthy_backends"] == 1
    finally:
        live.close()
        dead.close()
