"""One health prober for the whole proxy, without sockets: the worker's side (`HealthChecks`
probes only while active; a relayed verdict sets the flag and the gauges) and main's
(`HealthProber`: which worker probes, re-chosen when it dies or is retired; verdicts relayed,
replayed, forgotten, handed over)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from dataplane.command import codec
from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    WORKER_ONLY_VERBS,
    AddBackend,
    Cluster,
    HealthCheckConfig,
    RemoveBackend,
    Request,
    SetBackendHealth,
    SetHealthCheck,
    UdpClusterConfig,
    UdpHealthConfig,
)
from dataplane.command.responses import Event, EventKind, RunState
from dataplane.command.state import ConfigState
from dataplane.main.main_upgrade import UpgradeData
from dataplane.main.prober import HealthProber
from dataplane.proxy.clusters import ClusterRuntime
from dataplane.proxy.health import checks
from dataplane.proxy.health.checks import HealthChecks

B0 = SocketAddress("127.0.0.1", 5301)
B1 = SocketAddress("127.0.0.1", 5302)
CHECK = HealthCheckConfig(uri="/health", interval=2, healthy_threshold=2, unhealthy_threshold=2)

# -- the worker's side ------------------------------------------------------------------------


class FakeProbe:
    made: list[FakeProbe] = []

    def __init__(self, address: SocketAddress, done: Callable[[bool], None]) -> None:
        self.address, self.done, self.running = address, done, True
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


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    FakeProbe.made = []
    monkeypatch.setattr(checks, "Probe", lambda _l, a, _r, _s, _t, done: FakeProbe(a, done))
    return FakeHost()


def checked(host: FakeHost, active: bool) -> HealthChecks:
    runtime = ClusterRuntime(Cluster(cluster_id="app"))
    for n, address in enumerate((B0, B1)):
        runtime.backends.add(AddBackend(cluster_id="app", backend_id=f"b{n}", address=address))
    host.proxy.clusters["app"] = runtime
    health = HealthChecks(host)
    health.active = active
    health.apply(Request.of(add_cluster=Cluster(cluster_id="app", health_check=CHECK)))
    return health


def backend(host: FakeHost, backend_id: str) -> Any:
    return next(b for b in host.proxy.clusters["app"].backends if b.backend_id == backend_id)


def verdict(healthy: bool, backend_id: str = "b0", address: SocketAddress = B0) -> Any:
    return SetBackendHealth(
        cluster_id="app", backend_id=backend_id, address=address, healthy=healthy
    )


def test_an_inactive_worker_probes_nothing_but_keeps_the_rhythm(host: FakeHost) -> None:
    health = checked(host, active=False)
    for second in range(10):
        health.tick(host.now + second)
    assert FakeProbe.made == []
    assert health.due["app"] == host.now + 10  # due every 2 s, as the prober's would be
    health.set_active(True)
    health.tick(host.now + 9.5)
    assert FakeProbe.made == []  # not before the next due time: no burst at the handover
    health.tick(host.now + 10)
    assert [p.address for p in FakeProbe.made] == [B0, B1]


def test_a_worker_no_longer_prober_drops_its_probes_and_partial_counts(host: FakeHost) -> None:
    health = checked(host, active=True)
    health.tick(host.now)
    FakeProbe.made[0].end(False)  # b0: one failure of two
    assert FakeProbe.made[1].running
    health.set_active(False)
    assert not FakeProbe.made[1].running and health.probes == {}
    assert health.verdicts[("app", "b0", B0)].failures == 0
    health.set_active(True)
    health.tick(host.now + 2)
    FakeProbe.made[2].end(False)
    assert backend(host, "b0").healthy  # one failure since it probes again: not yet


def test_a_relayed_verdict_flips_health_and_gauges_without_events(host: FakeHost) -> None:
    health = checked(host, active=False)
    assert health.gauges() == {"health_check.healthy_backends": 2}
    assert health.relay(verdict(False))
    assert not backend(host, "b0").healthy
    assert health.gauges() == {"health_check.healthy_backends": 1}
    assert ("app", "b0", "health_check.healthy", 0) in health.backend_gauges()
    assert health.unhealthy() == 1
    assert host.sent == []  # main already sent the prober's event
    assert health.snapshot()["health_check.down"] == 0  # the prober counted it
    assert health.relay(verdict(True))
    assert backend(host, "b0").healthy and health.gauges()["health_check.healthy_backends"] == 2
    assert not health.relay(verdict(False, "gone", B1))  # unknown here: nothing changes
    assert not health.relay(verdict(False, "b1", B0))  # id and address must both match
    assert all(b.healthy for b in host.proxy.clusters["app"].backends)


def test_a_new_prober_seeded_with_a_relayed_verdict_does_not_flap(host: FakeHost) -> None:
    health = checked(host, active=False)
    health.relay(verdict(False))
    health.set_active(True)
    health.tick(host.now + 2)
    FakeProbe.made[0].end(True)
    assert not backend(host, "b0").healthy  # one success of healthy_threshold = 2
    health.tick(host.now + 4)
    FakeProbe.made[2].end(True)
    assert backend(host, "b0").healthy
    assert next(r.content.value.kind for r in host.sent) == EventKind.HEALTH_CHECK_HEALTHY


# -- main's side ------------------------------------------------------------------------------


class FakeGather:
    def __init__(self) -> None:
        self.on_done: Any = None


class FakePool:
    def __init__(self, count: int) -> None:
        self.workers = {n: self.worker(n) for n in range(count)}
        self.stopping = False
        self.sent: list[tuple[int, str, Any]] = []  # worker id, verb, body

    @staticmethod
    def worker(worker_id: int, booted: bool = True) -> Any:
        return SimpleNamespace(
            id=worker_id, booted=booted, run_state=RunState.RUNNING, health_prober=False
        )

    def live(self) -> list[Any]:
        return [w for w in self.workers.values() if w.run_state != RunState.STOPPED]

    def scatter(self, request: Request, timeout: float | None, workers: list[Any]) -> FakeGather:
        self.sent += [(w.id, request.verb, request.body) for w in workers]
        return FakeGather()

    def take(self) -> list[tuple[int, str, Any]]:
        sent, self.sent = self.sent, []
        return sent


def state_with_check() -> ConfigState:
    state = ConfigState()
    state.dispatch(Request.of(add_cluster=Cluster(cluster_id="app", health_check=CHECK)))
    for n, address in enumerate((B0, B1)):
        add = AddBackend(cluster_id="app", backend_id=f"b{n}", address=address)
        state.dispatch(Request.of(add_backend=add))
    return state


def event(kind: EventKind, backend_id: str = "b0", address: SocketAddress = B0) -> Event:
    return Event(kind=kind, cluster_id="app", backend_id=backend_id, address=address)


def prober_of(pool: FakePool) -> tuple[HealthProber, FakePool]:
    prober = HealthProber(pool, state_with_check())
    return prober, pool


def test_main_names_the_lowest_running_worker_and_only_it() -> None:
    prober, pool = prober_of(FakePool(3))
    pool.workers[0].booted = False  # still booting: not a candidate yet
    prober.reconsider()
    assert prober.prober == 1
    assert [(w, verb, body.active) for w, verb, body in pool.take()] == [
        (1, "set_health_prober", True)
    ]
    assert [w.health_prober for w in pool.workers.values()] == [False, True, False]
    pool.workers[0].booted = True
    prober.reconsider()  # sticky: the prober serves, nothing moves
    assert prober.prober == 1 and pool.take() == []


def test_main_names_another_prober_when_it_dies_or_is_retired() -> None:
    prober, pool = prober_of(FakePool(2))
    prober.reconsider()
    pool.take()
    pool.workers[0].run_state = RunState.STOPPED  # kill -9: the pool lost it
    pool.on_worker_gone(pool.workers[0])
    assert prober.prober == 1
    assert [(w, verb, body.active) for w, verb, body in pool.take()] == [
        (1, "set_health_prober", True)
    ]
    pool.workers[2] = pool.worker(2, booted=False)  # the restarted worker
    pool.on_spawned(pool.workers[2])
    pool.workers[2].booted = True
    pool.on_booted(pool.workers[2])
    assert prober.prober == 1 and pool.take() == []
    pool.workers[1].run_state = RunState.STOPPING  # upgrade_worker retires it
    pool.on_worker_gone(pool.workers[1])
    assert prober.prober == 2
    assert [(w, body.active) for w, _verb, body in pool.take()] == [(1, False), (2, True)]
    pool.stopping = True  # the whole proxy stops: nobody is named any more
    pool.workers[2].run_state = RunState.STOPPED
    prober.reconsider()
    assert prober.prober == 2 and pool.take() == []


def test_no_running_worker_means_no_prober_until_one_boots() -> None:
    prober, pool = prober_of(FakePool(1))
    prober.reconsider()
    pool.workers[0].run_state = RunState.STOPPED
    prober.reconsider()
    assert prober.prober is None
    pool.workers[1] = pool.worker(1)
    prober.reconsider()
    assert prober.prober == 1


def test_the_probers_verdicts_are_relayed_to_the_others_and_replayed() -> None:
    prober, pool = prober_of(FakePool(3))
    prober.reconsider()
    pool.take()
    pool.on_worker_event(pool.workers[0], event(EventKind.HEALTH_CHECK_UNHEALTHY))
    sent = pool.take()
    assert [(w, verb) for w, verb, _ in sent] == [
        (1, "set_backend_health"),
        (2, "set_backend_health"),
    ]
    assert sent[0][2] == verdict(False)
    pool.on_worker_event(pool.workers[1], event(EventKind.HEALTH_CHECK_HEALTHY))
    pool.on_worker_event(pool.workers[0], event(EventKind.BACKEND_DOWN))
    assert pool.take() == []  # not the prober's, or not a verdict
    pool.workers[3] = pool.worker(3, booted=False)
    pool.on_spawned(pool.workers[3])
    assert pool.take() == [(3, "set_backend_health", verdict(False))]
    pool.on_worker_event(pool.workers[0], event(EventKind.HEALTH_CHECK_HEALTHY))
    assert {w for w, _, body in pool.take() if body.healthy} == {1, 2, 3}
    pool.on_spawned(pool.worker(4, booted=False))
    assert pool.take() == []  # healthy again: nothing to replay


def test_verdicts_are_forgotten_with_their_backend_or_check() -> None:
    prober, pool = prober_of(FakePool(1))
    prober.reconsider()
    for address, backend_id in ((B0, "b0"), (B1, "b1")):
        prober.on_event(
            pool.workers[0], event(EventKind.HEALTH_CHECK_UNHEALTHY, backend_id, address)
        )
    assert len(prober.unhealthy) == 2
    remove = RemoveBackend(cluster_id="app", backend_id="b1", address=B1)
    prober.on_change(Request.of(remove_backend=remove))
    assert list(prober.unhealthy) == [("app", "b0", B0)]
    changed = SetHealthCheck(cluster_id="app", config=HealthCheckConfig(uri="/other"))
    prober.state.dispatch(Request.of(set_health_check=changed))
    prober.on_change(Request.of(set_health_check=changed))
    assert len(prober.unhealthy) == 1  # still an HTTP probe: the workers keep the verdict
    udp = Cluster(
        cluster_id="app",
        health_check=CHECK,
        udp=UdpClusterConfig(health=UdpHealthConfig(tcp_port=53)),
    )
    prober.state.dispatch(Request.of(add_cluster=udp))
    prober.on_change(Request.of(add_cluster=udp))
    assert prober.unhealthy == {}  # another kind of probe: the workers start afresh
    prober.state.dispatch(Request.of(remove_cluster="app"))
    pool.take()
    prober.on_event(pool.workers[0], event(EventKind.HEALTH_CHECK_UNHEALTHY))
    assert prober.unhealthy == {} and pool.take() == []  # a verdict late for its check


def test_the_choice_and_verdicts_travel_across_a_main_upgrade() -> None:
    prober, pool = prober_of(FakePool(2))
    prober.reconsider()
    prober.on_event(pool.workers[0], event(EventKind.HEALTH_CHECK_UNHEALTHY))
    data = UpgradeData(
        command_socket_path="s",
        command_socket_fd=3,
        config_path=None,
        next_worker_id=2,
        workers=[],
        listeners=[],
        state=[],
        request_counts={},
        health_prober=prober.prober,
        unhealthy_backends=prober.handed(),
    )
    decoded = codec.decode(codec.encode(data), UpgradeData)
    successor, pool2 = prober_of(FakePool(2))
    successor.adopt(decoded.health_prober, decoded.unhealthy_backends)
    successor.reconsider(tell_all=True)
    assert successor.prober == 0 and list(successor.unhealthy) == [("app", "b0", B0)]
    assert [(w, body.active) for w, _, body in pool2.take()] == [(1, False), (0, True)]
    old = codec.encode(data).replace(b',"health_prober":0', b"")  # a main from before
    assert codec.decode(old, UpgradeData).health_prober is None


def test_worker_only_verbs_are_named() -> None:
    assert {"set_health_prober", "set_backend_health"} <= WORKER_ONLY_VERBS
    request = Request.of(set_backend_health=verdict(False))
    assert codec.decode(codec.encode(request), Request) == request
