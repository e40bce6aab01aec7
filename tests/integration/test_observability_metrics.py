"""The Prometheus endpoint of a real `pysozu start`: exact figures after known traffic, a scrape
that survives a stopped or killed worker, series that go away with their clusters."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    PathRule,
    RemoveBackend,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.responses import ResponseStatus

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, accept: str = "", timeout: float = 10.0) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        connection.close()


def samples(port: int) -> Samples:
    status, _type, body = scrape(port)
    assert status == 200
    found: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def raw_exchange(port: int, host: str) -> tuple[int, int, int]:
    """One request on its own connection: (status, bytes sent, bytes received)."""
    request = f"GET /obs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return int(received.split(b" ", 2)[1]), len(request), len(received)


def config(pysozu: Any, listen: int, prometheus: int, backend: int) -> str:
    base = pysozu.http_config(listen, {"app": ("app.com", [backend])})
    empty = (
        '[clusters.empty]\nprotocol = "http"\n'
        f'frontends = [{{ address = "127.0.0.1:{listen}", hostname = "empty.com" }}]\n'
        "backends = []\n"
    )
    return f'[prometheus]\naddress = "127.0.0.1:{prometheus}"\n\n{base}\n{empty}'


def test_figures_after_known_traffic(pysozu: Any, backends: Any) -> None:
    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    pysozu.start(config(pysozu, listen, prometheus, backends.start("app-1")))
    sent = received = 0
    app_in = app_out = 0
    for host, expected, times in (
        ("app.com", 200, 5),
        ("nowhere.com", 404, 2),
        ("empty.com", 503, 1),
    ):
        for _ in range(times):
            status, request_bytes, response_bytes = raw_exchange(listen, host)
            assert status == expected
            sent += request_bytes
            received += response_bytes
            if host == "app.com":
                app_in += request_bytes
                app_out += response_bytes
    deadline = time.monotonic() + 5
    while True:  # connections close asynchronously: wait until the gauge says so
        found = samples(prometheus)
        active = value(found, "pysozu_listener_active_connections", listener=f"127.0.0.1:{listen}")
        if active == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert active == 0
    total = "pysozu_http_requests_total"
    assert value(found, total, status_class="2xx") == 5
    assert value(found, total, status_class="4xx") == 2
    assert value(found, total, status_class="5xx") == 1
    cluster = "pysozu_cluster_http_requests_total"
    assert value(found, cluster, cluster="app", status_class="2xx") == 5
    assert value(found, cluster, cluster="empty", status_class="5xx") == 1
    assert not any(k[0] == cluster and ("cluster", "nowhere.com") in k[1] for k in found)
    assert value(found, "pysozu_received_bytes_total") == sent
    assert value(found, "pysozu_sent_bytes_total") == received
    assert value(found, "pysozu_cluster_received_bytes_total", cluster="app") == app_in
    assert value(found, "pysozu_cluster_sent_bytes_total", cluster="app") == app_out
    assert value(found, "pysozu_request_duration_seconds_count") == 8
    assert value(found, "pysozu_cluster_upstream_duration_seconds_count", cluster="app") == 5
    accepted = "pysozu_listener_accepted_connections_total"
    assert value(found, accepted, listener=f"127.0.0.1:{listen}") == 8
    assert value(found, "pysozu_http_default_answers_total", status="404") == 2
    assert value(found, "pysozu_http_default_answers_total", status="503") == 1
    assert value(found, "pysozu_workers_alive") == 2
    assert value(found, "pysozu_worker_scrape_up", worker="0") == 1
    assert value(found, "pysozu_worker_scrape_up", worker="1") == 1


def test_openmetrics_and_http_errors(pysozu: Any, backends: Any) -> None:
    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    pysozu.start(config(pysozu, listen, prometheus, backends.start("app-1")))
    status, content_type, body = scrape(prometheus, accept="application/openmetrics-text")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")
    status, content_type, body = scrape(prometheus)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    connection = http.client.HTTPConnection("127.0.0.1", prometheus, timeout=5)
    connection.request("GET", "/other")
    assert connection.getresponse().status == 404
    connection.close()


def test_the_cli_flag_serves_metrics(pysozu: Any, backends: Any) -> None:
    import subprocess
    import sys

    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    config_path, _socket = pysozu.write_config(
        pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dataplane", "start", "-c", str(config_path),
         "--prometheus-address", f"127.0.0.1:{prometheus}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pysozu.wait_for_port(prometheus, timeout=20)
        assert value(samples(prometheus), "pysozu_workers_alive") >= 0
    finally:
        process.terminate()
        process.wait(timeout=15)


def worker_pids(proxy: Any) -> dict[int, int]:
    return {info.id: info.pid for info in proxy.workers()}


def test_a_stopped_worker_never_blocks_a_scrape(pysozu: Any, backends: Any) -> None:
    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    proxy = pysozu.start(config(pysozu, listen, prometheus, backends.start("app-1")))
    pids = worker_pids(proxy)
    os.kill(pids[0], signal.SIGSTOP)
    try:
        started = time.monotonic()
        found = samples(prometheus)
        assert time.monotonic() - started < 5.0  # the 3 s deadline, not worker_timeout
        assert value(found, "pysozu_worker_scrape_up", worker="0") == 0
        assert value(found, "pysozu_worker_scrape_up", worker="1") == 1
        assert value(found, "pysozu_worker_scrape_timeouts_total", worker="0") == 1
    finally:
        os.kill(pids[0], signal.SIGCONT)


def test_a_worker_killed_during_a_scrape(pysozu: Any, backends: Any) -> None:
    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    proxy = pysozu.start(config(pysozu, listen, prometheus, backends.start("app-1")))
    pids = worker_pids(proxy)
    for _ in range(10):
        assert raw_exchange(listen, "app.com")[0] == 200
    connection = http.client.HTTPConnection("127.0.0.1", prometheus, timeout=10)
    connection.request("GET", "/metrics")
    os.kill(pids[1], signal.SIGKILL)
    response = connection.getresponse()
    assert response.status == 200
    assert b"pysozu_workers_alive" in response.read()
    connection.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the dead worker is replaced; scrapes go on
        found = samples(prometheus)
        if value(found, "pysozu_worker_restarts_total") == 1 and len(proxy.workers()) == 2:
            break
        time.sleep(0.2)
    assert value(found, "pysozu_worker_restarts_total") == 1
    assert value(found, "pysozu_workers_alive") == 2
    assert ("pysozu_worker_scrape_up", (("worker", "1"),)) not in found  # gone with it


def _ok(proxy: Any, request: Request) -> None:
    response = proxy.request(request)
    assert response.status == ResponseStatus.OK, response.message


def test_series_of_removed_clusters_disappear(pysozu: Any, backends: Any) -> None:
    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    backend = backends.start("shared")
    proxy = pysozu.start(config(pysozu, listen, prometheus, backend))
    assert raw_exchange(listen, "app.com")[0] == 200

    def series() -> int:  # main's own per-verb counters grow with new verbs: not counted
        return sum(1 for name, _ in samples(prometheus) if "config_requests" not in name)

    before = series()
    address = SocketAddress.parse(f"127.0.0.1:{listen}")
    backend_address = SocketAddress.parse(f"127.0.0.1:{backend}")
    ids = [f"c{n}" for n in range(200)]
    fronts = {}
    for cluster_id in ids:
        front = RequestHttpFrontend(
            cluster_id=cluster_id, address=address, hostname=f"{cluster_id}.com", path=PathRule()
        )
        fronts[cluster_id] = front
        _ok(proxy, Request.of(add_cluster=Cluster(cluster_id=cluster_id)))
        _ok(proxy, Request.of(add_http_frontend=front))
        backend_request = AddBackend(
            cluster_id=cluster_id, backend_id=f"{cluster_id}-0", address=backend_address
        )
        _ok(proxy, Request.of(add_backend=backend_request))
    connection = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
    for cluster_id in ids:  # keep-alive: both workers need not see every cluster
        connection.request("GET", "/", headers={"Host": f"{cluster_id}.com"})
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    connection.close()
    during = series()
    assert during >= before + 200 * 3  # requests, bytes in and out at least, per cluster
    for cluster_id in ids:
        _ok(proxy, Request.of(remove_http_frontend=fronts[cluster_id]))
        gone = RemoveBackend(
            cluster_id=cluster_id, backend_id=f"{cluster_id}-0", address=backend_address
        )
        _ok(proxy, Request.of(remove_backend=gone))
        _ok(proxy, Request.of(remove_cluster=cluster_id))
    assert series() == before


@pytest.mark.timeout(90)
def test_the_command_line_address_survives_an_upgrade_of_main(pysozu: Any, backends: Any) -> None:
    listen, prometheus = pysozu.free_port(), pysozu.free_port()
    base = pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    proxy = pysozu.start(base, args=["--prometheus-address", f"127.0.0.1:{prometheus}"])
    assert value(samples(prometheus), "pysozu_main_upgrades_total") == 0
    result = proxy.cli("upgrade", timeout=60)
    assert result.returncode == 0, result.stderr + proxy.log()
    assert proxy.process.wait(timeout=10) == 0  # the old main is gone: the new one answers
    deadline = time.monotonic() + 10
    while True:  # the new main binds once the old one has let the address go
        try:
            found = samples(prometheus)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert value(found, "pysozu_main_upgrades_total") == 1
    assert proxy.cli("shutdown").returncode == 0
