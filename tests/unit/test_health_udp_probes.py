"""UDP backend probes (`[clusters.<id>.udp.health]`) without sockets: the plan read from the
table, which probe each mode starts, rise/fall, `udp.backend.health`, events, HEALTH_OFF."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    HealthCheckConfig,
    Request,
    UdpClusterConfig,
    UdpHealthConfig,
    UdpHealthMode,
)
from dataplane.command.responses import ClusterInformation, EventKind
from dataplane.proxy.clusters import ClusterRuntime
from dataplane.proxy.health import checks
from dataplane.proxy.health.checks import HealthChecks
from dataplane.proxy.health.verdict import http_plan, udp_plan


class FakeProbe:
    """Stands for Probe and UdpProbe: records how it was made; the test ends it."""

    made: list[FakeProbe] = []

    def __init__(self, kind: str, address: SocketAddress, extra: Any, done: Callable[[bool], None]):
        self.kind, self.address, self.extra, self.done = kind, address, extra, done
        self.running = True
        FakeProbe.made.append(self)

    def close(self) -> None:
        self.running = False

    def end(self, passed: bool) -> None:
        self.running = False
        self.done(passed)


class FakeHost:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sent: list[Any] = []
        self.metrics = SimpleNamespace(
            counter_sources=[], gauge_sources=[], backend_gauge_sources=[]
        )
        self.proxy = SimpleNamespace(clusters={}, tcp=SimpleNamespace(listeners={}))

    def send(self, response: Any) -> None:
        self.sent.append(response)

    def events(self) -> list[tuple[EventKind, str | None]]:
        return [(r.content.value.kind, r.content.value.backend_id) for r in self.sent]


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    FakeProbe.made = []

    def tcp(
        loop: Any, address: SocketAddress, request: Any, _status: int, _t: float, done: Any
    ) -> FakeProbe:
        return FakeProbe("http" if request else "tcp", address, request, done)

    def udp(loop: Any, address: SocketAddress, payload: bytes, _t: float, done: Any) -> FakeProbe:
        return FakeProbe("udp", address, payload, done)

    monkeypatch.setattr(checks, "Probe", tcp)
    monkeypatch.setattr(checks, "UdpProbe", udp)
    return FakeHost()


def udp_cluster(**health: Any) -> Cluster:
    return Cluster(cluster_id="dns", udp=UdpClusterConfig(health=UdpHealthConfig(**health)))


def setup(host: FakeHost, cluster: Cluster, ports: tuple[int, ...] = (5301, 5302)) -> HealthChecks:
    runtime = ClusterRuntime(cluster)
    for n, port in enumerate(ports):
        address = SocketAddress("127.0.0.1", port)
        runtime.backends.add(AddBackend(cluster_id="dns", backend_id=f"b{n}", address=address))
    host.proxy.clusters["dns"] = runtime
    health = HealthChecks(host)  # type: ignore[arg-type]
    health.apply(Request.of(add_cluster=cluster))
    return health


def round_of(health: HealthChecks, host: FakeHost, passed: dict[str, bool]) -> None:
    """One interval: the due probes start, each ends as `passed` says for its backend."""
    before = len(FakeProbe.made)
    health.tick(host.now)
    for probe in FakeProbe.made[before:]:
        probe.end(passed[f"b{probe.address.port - 5301}"])
    host.now += 5


def test_the_plan_follows_the_table_and_its_defaults() -> None:
    plan = udp_plan(UdpHealthConfig(mode=UdpHealthMode.UDP_PROBE, udp_probe_payload=b"ping"))
    assert plan is not None
    assert (plan.kind, plan.interval, plan.timeout, plan.rise, plan.fall) == ("udp", 5, 2, 2, 3)
    assert plan.payload == b"ping"
    tcp = udp_plan(UdpHealthConfig(tcp_port=9053, rise=1, fall=4, probe_interval_seconds=7))
    assert tcp is not None and (tcp.kind, tcp.port, tcp.rise, tcp.fall, tcp.interval) == (
        "udp-tcp",
        9053,
        1,
        4,
        7,
    )
    assert udp_plan(UdpHealthConfig(mode=UdpHealthMode.HEALTH_OFF)) is None
    # UDP_PROBE without a payload probes by TCP connect, as sozu does.
    assert udp_plan(UdpHealthConfig(mode=UdpHealthMode.UDP_PROBE)).kind == "udp-tcp"  # type: ignore[union-attr]
    http = http_plan(HealthCheckConfig(uri="/h", healthy_threshold=4, unhealthy_threshold=5))
    assert (http.kind, http.rise, http.fall, http.uri) == ("http", 4, 5, "/h")


def test_udp_probe_sends_the_payload_to_each_backend(host: FakeHost) -> None:
    health = setup(host, udp_cluster(mode=UdpHealthMode.UDP_PROBE, udp_probe_payload=b"ping"))
    health.tick(host.now)
    assert [(p.kind, p.address.port, p.extra) for p in FakeProbe.made] == [
        ("udp", 5301, b"ping"),
        ("udp", 5302, b"ping"),
    ]
    health.tick(host.now + 1)  # not due again before the interval; running ones not doubled
    assert len(FakeProbe.made) == 2


def test_tcp_probe_connects_to_the_companion_port(host: FakeHost) -> None:
    health = setup(host, udp_cluster(tcp_port=9053))
    health.tick(host.now)
    assert {(p.kind, str(p.address)) for p in FakeProbe.made} == {("tcp", "127.0.0.1:9053")}
    assert len(FakeProbe.made) == 2  # one per backend, both to their IP's port 9053


def test_fall_and_rise_take_a_backend_out_and_back(host: FakeHost) -> None:
    health = setup(
        host, udp_cluster(mode=UdpHealthMode.UDP_PROBE, udp_probe_payload=b"p", rise=2, fall=3)
    )
    b0 = next(b for b in host.proxy.clusters["dns"].backends if b.backend_id == "b0")
    for _ in range(2):
        round_of(health, host, {"b0": False, "b1": True})
    assert b0.healthy  # two failures: not yet
    round_of(health, host, {"b0": False, "b1": True})
    assert not b0.healthy
    assert health.snapshot()["udp.backend.health"] == 1
    assert health.snapshot()["health_check.down"] == 0  # sozu counts UDP verdicts apart
    assert (EventKind.HEALTH_CHECK_UNHEALTHY, "b0") in host.events()
    assert (EventKind.BACKEND_DOWN, "b0") in host.events()
    round_of(health, host, {"b0": True, "b1": True})
    assert not b0.healthy  # one success: not yet
    round_of(health, host, {"b0": True, "b1": True})
    assert b0.healthy
    assert health.snapshot()["udp.backend.health"] == 2
    assert health.gauges() == {"health_check.healthy_backends": 2}
    assert (EventKind.HEALTH_CHECK_HEALTHY, "b0") in host.events()


def test_health_off_and_removal_stop_probing_and_restore(host: FakeHost) -> None:
    health = setup(host, udp_cluster(mode=UdpHealthMode.HEALTH_OFF))
    health.tick(host.now)
    assert FakeProbe.made == []
    health.apply(Request.of(add_cluster=udp_cluster(fall=1)))  # turned on at run time
    round_of(health, host, {"b0": False, "b1": False})
    backends = list(host.proxy.clusters["dns"].backends)
    assert not any(b.healthy for b in backends)
    health.apply(Request.of(add_cluster=Cluster(cluster_id="dns")))  # the table removed
    assert all(b.healthy for b in backends) and health.plan("dns") is None
    health.tick(host.now + 60)
    assert len(FakeProbe.made) == 2  # nothing more


def test_the_udp_table_wins_over_a_health_check(host: FakeHost) -> None:
    cluster = udp_cluster(fall=1)
    cluster = Cluster(
        cluster_id="dns", udp=cluster.udp, health_check=HealthCheckConfig(uri="/", interval=1)
    )
    health = setup(host, cluster)
    health.tick(host.now)
    assert {p.kind for p in FakeProbe.made} == {"tcp"}  # TCP_PROBE, no HTTP GET
    assert health.plan("dns").kind == "udp-tcp"  # type: ignore[union-attr]


def test_cluster_answers_and_status_carry_the_verdicts(host: FakeHost) -> None:
    health = setup(host, udp_cluster(fall=1))
    info = ClusterInformation(configuration=Cluster(cluster_id="dns"))
    health.annotate(info)
    assert [(h.backend_id, h.healthy) for h in info.backend_health] == [("b0", True), ("b1", True)]
    round_of(health, host, {"b0": False, "b1": True})
    health.annotate(info)
    assert [(h.backend_id, h.healthy) for h in info.backend_health] == [("b0", False), ("b1", True)]
    assert health.unhealthy() == 1
    other = ClusterInformation(configuration=Cluster(cluster_id="unchecked"))
    health.annotate(other)
    assert other.backend_health == []  # no check: no verdict to show
