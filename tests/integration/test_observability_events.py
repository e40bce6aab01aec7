"""`pysozu events --json` against a real proxy: a worker killed and relaunched, and a backend
whose circuit breaker opens (BACKEND_DOWN, NO_AVAILABLE_BACKENDS) and closes (BACKEND_UP)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dataplane.command.messages import (
    MetricDetail,
    QueryMetricsOptions,
    Request,
    SetMetricDetail,
)
from dataplane.command.responses import EventKind, ResponseStatus

pytestmark = pytest.mark.timeout(150)


class Watcher:
    """`pysozu -j events` in the background; its events (kind, source, fields) in a queue."""

    def __init__(self, proxy: Any) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dataplane", "-c", str(proxy.config_path), "-j", "events"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[tuple[EventKind, str, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.wait_for(EventKind.EVENTS_SUBSCRIBED, timeout=10)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            answer = json.loads(line)
            event = answer["content"]["content_type"]["EVENT"]
            self.events.put((EventKind[event["kind"]], answer["message"], event))

    def wait_for(
        self, kind: EventKind, timeout: float, poke: Callable[[], object] = lambda: None
    ) -> dict[str, Any] | None:
        """The next event of `kind` (others are skipped), calling `poke` while waiting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            poke()
            try:
                found, source, event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if found == kind:
                return {"source": source, **event}
        return None

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def watcher_factory() -> Iterator[Callable[[Any], Watcher]]:
    started: list[Watcher] = []

    def start(proxy: Any) -> Watcher:
        started.append(Watcher(proxy))
        return started[-1]

    yield start
    for watcher in started:
        watcher.close()


def test_worker_killed_and_relaunched(pysozu: Any, watcher_factory: Any) -> None:
    proxy = pysozu.start(pysozu.http_config(pysozu.free_port(), {}))
    watcher = watcher_factory(proxy)
    os.kill(proxy.workers()[0].pid, signal.SIGKILL)
    assert watcher.wait_for(EventKind.WORKER_KILLED, timeout=10) is not None
    assert watcher.wait_for(EventKind.WORKER_RELAUNCHED, timeout=10) is not None


def test_backend_down_then_up(pysozu: Any, backends: Any, watcher_factory: Any) -> None:
    listen = pysozu.free_port()
    backend = backends.start("app-1")
    proxy = pysozu.start(
        "worker_count = 1\n" + pysozu.http_config(listen, {"app": ("app.com", [backend])}),
        workers=1,
    )
    assert pysozu.http_get(listen, "app.com") == (200, b"app-1")
    watcher = watcher_factory(proxy)
    server = backends.processes[-1]
    server.terminate()
    server.wait(timeout=5)

    def poke() -> None:  # requests drive the breaker: it only sees connection attempts
        status, _ = pysozu.http_get(listen, "app.com")
        assert status in (200, 503)

    # Six failed connects, each after the previous backoff (1, 1, 1-3, 1-7, 1-15 s) open it.
    down = watcher.wait_for(EventKind.BACKEND_DOWN, timeout=60, poke=poke)
    assert down is not None
    assert (down["backend_id"], down["cluster_id"]) == ("app-1", "app")
    assert down["source"] == "WRK-00"
    assert down["address"] == {"ip": {"inner": {"V4": 0x7F000001}}, "port": backend}
    none_left = watcher.wait_for(EventKind.NO_AVAILABLE_BACKENDS, timeout=5)
    assert none_left is not None and none_left["cluster_id"] == "app"

    backends.start("app-1", port=backend)
    up = watcher.wait_for(EventKind.BACKEND_UP, timeout=60, poke=poke)  # next try: <= 31 s
    assert up is not None and up["backend_id"] == "app-1"
    assert pysozu.http_get(listen, "app.com") == (200, b"app-1")


def test_a_removed_backend_says_when_its_last_connection_is_gone(
    pysozu: Any, backends: Any, watcher_factory: Any
) -> None:
    listen = pysozu.free_port()
    ports = [backends.start("app-1"), backends.start("app-2")]
    proxy = pysozu.start(
        "worker_count = 1\n" + pysozu.http_config(listen, {"app": ("app.com", ports)}), workers=1
    )
    watcher = watcher_factory(proxy)
    with socket.create_connection(("127.0.0.1", listen), timeout=5) as client:
        served = b""
        while b"app-1" not in served:  # a kept-alive client on app-1 holds a connection to it
            client.sendall(b"GET / HTTP/1.1\r\nHost: app.com\r\n\r\n")
            served = client.recv(4096)
        removed = proxy.cli(
            "backend", "remove", "--id", "app", "--backend-id", "app-1",
            "--address", f"127.0.0.1:{ports[0]}",
        )  # fmt: skip
        assert removed.returncode == 0, removed.stderr
        assert watcher.wait_for(EventKind.REMOVED_BACKEND_HAS_NO_CONNECTIONS, timeout=1.5) is None
    event = watcher.wait_for(EventKind.REMOVED_BACKEND_HAS_NO_CONNECTIONS, timeout=10)
    assert event is not None and (event["cluster_id"], event["backend_id"]) == ("app", "app-1")
    assert event["source"] == "WRK-00"


def test_worker_upgraded_and_metrics_configured(pysozu: Any, watcher_factory: Any) -> None:
    proxy = pysozu.start(pysozu.http_config(pysozu.free_port(), {}))
    watcher = watcher_factory(proxy)
    assert proxy.cli("metrics", "disable").returncode == 0
    assert watcher.wait_for(EventKind.METRICS_CONFIGURED, timeout=10) is not None
    assert proxy.cli("upgrade", "--worker", "0", timeout=60).returncode == 0
    upgraded = watcher.wait_for(EventKind.WORKER_UPGRADED, timeout=10)
    assert upgraded is not None and upgraded["source"] == "main"


def test_a_metric_detail_lease_raises_the_detail_until_it_ends(
    pysozu: Any, backends: Any, watcher_factory: Any
) -> None:
    """sozu's set_metric_detail: backend figures while a lease asks for them (the configured
    detail is `cluster`), an event when the effective detail changes, back when it expires."""
    listen = pysozu.free_port()
    proxy = pysozu.start(
        "worker_count = 1\n"
        + pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])}),
        workers=1,
    )
    watcher = watcher_factory(proxy)

    def backends_counted() -> list[object]:
        assert pysozu.http_get(listen, "app.com") == (200, b"app-1")
        answer = proxy.request(Request.of(query_metrics=QueryMetricsOptions()))
        assert answer.content is not None
        return [
            backend
            for cluster in answer.content.value.clusters.values()
            for backend in cluster.backends
        ]

    assert backends_counted() == []  # detail `cluster`: no backend figures
    lease = SetMetricDetail(
        client_id="test", detail=MetricDetail.DETAIL_BACKEND, ttl_seconds=2, reason="debug"
    )
    answer = proxy.request(Request.of(set_metric_detail=lease))
    assert answer.status == ResponseStatus.OK, answer.message
    assert answer.content is not None
    assert answer.content.value.effective == MetricDetail.DETAIL_BACKEND
    changed = watcher.wait_for(EventKind.METRIC_DETAIL_CHANGED, timeout=5)
    assert changed is not None
    assert changed["metric_detail"]["effective"] == "DETAIL_BACKEND"
    assert backends_counted() != []
    expired = watcher.wait_for(EventKind.METRIC_DETAIL_CHANGED, timeout=10)
    assert expired is not None and expired["metric_detail"]["transition_kind"] == "expired"
    too_long = SetMetricDetail(
        client_id="test", detail=MetricDetail.DETAIL_BACKEND, ttl_seconds=301
    )
    refused = proxy.request(Request.of(set_metric_detail=too_long))
    assert refused.status == ResponseStatus.FAILURE and "ttl_seconds" in refused.message
