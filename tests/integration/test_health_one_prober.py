"""One health prober for the whole proxy (issue 18), black-box with 2 workers.

A backend counting its probes sees one per interval, not one per worker (HTTP and UDP
probes); a failing backend leaves both workers' rotation (the prober's verdict relayed by
main); kill -9 of the prober moves the probes to another worker, and the restarted worker gets
the verdicts replayed; a worker upgrade and a main upgrade keep exactly one prober; clients
cannot send the worker-only requests, and a state file holding one is refused.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_health_checks import Backend, config, wait_until
from test_udp_health import FAST as UDP_FAST
from test_udp_health import UDP_PROBE
from test_udp_health import Backend as UdpBackend
from test_udp_proxy import udp_config

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Empty, Request, SetBackendHealth, SetHealthProber
from dataplane.command.responses import ResponseStatus, RunState
from dataplane.command.statefile import encode_state

pytestmark = pytest.mark.timeout(180)

WINDOW = 6.0  # seconds of counting: one probe a second from one prober, two from two
MOST = 8  # one prober: about 6 (fewer when the host is loaded); two would make about 12


@pytest.fixture
def backend() -> Iterator[Callable[[str], Backend]]:
    """Starts HTTP backends that count the probes on /health (test_health_checks.Backend)."""
    started: list[Backend] = []

    def start(name: str) -> Backend:
        started.append(Backend(name))
        return started[-1]

    yield start
    for each in started:
        each.close()


def two_workers(port: int, ports: list[int]) -> str:
    return config(port, ports).replace("worker_count = 1", "worker_count = 2", 1)


def workers(proxy: Any) -> list[Any]:
    response = proxy.request(Request.of(list_workers=Empty()))
    assert response.status == ResponseStatus.OK, response.message
    return [w for w in response.content.value.vec if w.run_state == RunState.RUNNING]


def probers(proxy: Any) -> list[Any]:
    return [w for w in workers(proxy) if w.health_prober]


def one_prober(proxy: Any, count: int = 2) -> Any:
    """Until `count` workers run and exactly one of them is the prober; that one."""
    found: list[Any] = []

    def settled() -> bool:
        running = workers(proxy)
        found[:] = [w for w in running if w.health_prober]
        return len(running) == count and len(found) == 1

    wait_until(settled, timeout=30)
    return found[0]


def probes_in(backend: Backend, seconds: float = WINDOW) -> int:
    start = backend.probes
    time.sleep(seconds)
    return backend.probes - start


def unhealthy_per_worker(proxy: Any) -> list[int | None]:
    return [w.unhealthy_backends for w in proxy.workers() if w.run_state == RunState.RUNNING]


def test_a_backend_sees_one_probe_per_interval_not_one_per_worker(
    pysozu: Any, backend: Callable[[str], Backend]
) -> None:
    a, b = backend("a"), backend("b")
    port = pysozu.free_port()
    proxy = pysozu.start(two_workers(port, [a.port, b.port]), workers=2)
    one_prober(proxy)
    wait_until(lambda: a.probes >= 2)
    counted = probes_in(a)
    assert 2 <= counted <= MOST, counted
    assert "runs the health probes" in proxy.log()


def test_a_failing_backend_leaves_both_workers_rotation_and_comes_back(
    pysozu: Any, backend: Callable[[str], Backend]
) -> None:
    a, b = backend("a"), backend("b")
    port = pysozu.free_port()
    proxy = pysozu.start(two_workers(port, [a.port, b.port]), workers=2)
    one_prober(proxy)
    b.health_status = 500
    wait_until(lambda: unhealthy_per_worker(proxy) == [1, 1])
    answers = {pysozu.http_get(port, "app.com") for _ in range(40)}  # new connections: both
    assert answers == {(200, b"a")}
    b.health_status = 200
    wait_until(lambda: unhealthy_per_worker(proxy) == [0, 0])
    wait_until(lambda: (200, b"b") in {pysozu.http_get(port, "app.com") for _ in range(8)})


def test_kill_9_of_the_prober_moves_the_probes_and_keeps_the_verdicts(
    pysozu: Any, backend: Callable[[str], Backend]
) -> None:
    a, b = backend("a"), backend("b")
    port = pysozu.free_port()
    proxy = pysozu.start(two_workers(port, [a.port, b.port]), workers=2)
    first = one_prober(proxy)
    b.health_status = 500
    wait_until(lambda: unhealthy_per_worker(proxy) == [1, 1])
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: first.id not in {w.id for w in workers(proxy)} and len(workers(proxy)) == 2)
    second = one_prober(proxy)
    assert second.id != first.id
    # The restarted worker got the verdict replayed; the new prober, seeded, does not flap.
    assert unhealthy_per_worker(proxy) == [1, 1]
    b.health_status = 200
    counted = probes_in(a)
    assert 2 <= counted <= MOST, counted
    assert probers(proxy)[0].id == second.id
    wait_until(lambda: unhealthy_per_worker(proxy) == [0, 0])


def test_a_worker_upgrade_keeps_exactly_one_prober(
    pysozu: Any, backend: Callable[[str], Backend]
) -> None:
    a = backend("a")
    port = pysozu.free_port()
    proxy = pysozu.start(two_workers(port, [a.port]), workers=2)
    first = one_prober(proxy)
    result = proxy.cli("upgrade", "--worker", str(first.id), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    second = one_prober(proxy)
    assert second.id != first.id
    counted = probes_in(a)
    assert 2 <= counted <= MOST, counted


def test_a_main_upgrade_keeps_the_prober_and_the_verdicts(
    pysozu: Any, backend: Callable[[str], Backend]
) -> None:
    a, b = backend("a"), backend("b")
    port = pysozu.free_port()
    proxy = pysozu.start(two_workers(port, [a.port, b.port]), workers=2)
    first = one_prober(proxy)
    b.health_status = 500
    wait_until(lambda: unhealthy_per_worker(proxy) == [1, 1])
    result = proxy.cli("upgrade", "--worker", str(1 - first.id), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    # The replacement worker got the verdict replayed by main.
    wait_until(lambda: len(workers(proxy)) == 2 and unhealthy_per_worker(proxy) == [1, 1])
    result = proxy.cli("upgrade", timeout=120)  # main, then every worker
    assert result.returncode == 0, result.stdout + result.stderr
    one_prober(proxy)
    wait_until(lambda: unhealthy_per_worker(proxy) == [1, 1])
    counted = probes_in(a)
    assert 2 <= counted <= MOST, counted


def test_udp_probes_take_the_same_path(pysozu: Any) -> None:
    b0, b1 = UdpBackend("b0", pysozu.free_port), UdpBackend("b1", pysozu.free_port)
    try:
        port = pysozu.free_port()
        cluster = f"[clusters.dns.udp.health]\n{UDP_PROBE}{UDP_FAST}"
        toml = udp_config(port, [b0.port, b1.port], cluster=cluster)
        proxy = pysozu.start(toml.replace("worker_count = 1", "worker_count = 2", 1), workers=2)
        one_prober(proxy)
        wait_until(lambda: b1.probes >= 2)
        start = b1.probes
        time.sleep(WINDOW)
        assert 2 <= b1.probes - start <= MOST, b1.probes - start
        b0.answer_probes = False
        wait_until(lambda: unhealthy_per_worker(proxy) == [1, 1])
    finally:
        b0.close()
        b1.close()


def test_clients_cannot_send_worker_only_requests(
    pysozu: Any, backend: Callable[[str], Backend], tmp_path: Path
) -> None:
    a = backend("a")
    port = pysozu.free_port()
    proxy = pysozu.start(two_workers(port, [a.port]), workers=2)
    one_prober(proxy)
    verdict = SetBackendHealth(
        cluster_id="app",
        backend_id="b0",
        address=SocketAddress.parse(f"127.0.0.1:{a.port}"),
        healthy=False,
    )
    for request in (
        Request.of(set_backend_health=verdict),
        Request.of(set_health_prober=SetHealthProber(active=True)),
    ):
        response = proxy.request(request)
        assert response.status == ResponseStatus.FAILURE
        assert "sent by main to its workers, not by clients" in response.message
    assert unhealthy_per_worker(proxy) == [0, 0]
    assert len(probers(proxy)) == 1
    saved = tmp_path / "state.json"
    assert proxy.cli("state", "save", "--file", str(saved)).returncode == 0
    text = saved.read_text()
    assert "SET_BACKEND_HEALTH" not in text and "SET_HEALTH_PROBER" not in text
    extra = tmp_path / "worker-only.state"
    extra.write_bytes(encode_state([Request.of(set_backend_health=verdict)]))
    result = proxy.cli("state", "load", "--file", str(extra))
    assert "0 ok messages, 1 errors" in result.stdout, result.stdout + result.stderr
    wait_until(lambda: "set_backend_health is not a state request" in proxy.log(), timeout=10)
    assert unhealthy_per_worker(proxy) == [0, 0]
