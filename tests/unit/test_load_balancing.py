"""Backend selection: candidate tiers, circuit breaker, stickiness and every algorithm."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    LoadBalancingAlgorithms,
    LoadBalancingParams,
    LoadMetric,
)
from dataplane.proxy.balancing import load_balancing
from dataplane.proxy.balancing.load_balancing import MAX_CONNECT_TRIES, Backend, BackendSet

ALGORITHMS = list(LoadBalancingAlgorithms)


def add(
    backends: BackendSet,
    backend_id: str,
    port: int,
    weight: int | None = None,
    backup: bool | None = None,
    sticky_id: str | None = None,
) -> Backend:
    params = None if weight is None else LoadBalancingParams(weight=weight)
    return backends.add(
        AddBackend(
            cluster_id="c",
            backend_id=backend_id,
            address=SocketAddress.parse(f"127.0.0.1:{port}"),
            load_balancing_parameters=params,
            backup=backup,
            sticky_id=sticky_id,
        )
    )


def cluster(
    count: int,
    algorithm: LoadBalancingAlgorithms = LoadBalancingAlgorithms.ROUND_ROBIN,
    seed: int = 7,
) -> BackendSet:
    backends = BackendSet(algorithm, rng=random.Random(seed))
    for i in range(count):
        add(backends, f"b{i}", 9000 + i)
    return backends


def picked(backends: BackendSet, now: float = 0.0, **kwargs: object) -> str | None:
    backend = backends.select(now, **kwargs)  # type: ignore[arg-type]
    return None if backend is None else backend.backend_id


class TestMembership:
    def test_add_update_remove_get(self) -> None:
        backends = BackendSet()
        first = add(backends, "a", 1)
        assert first.weight == 100 and not first.backup
        again = add(backends, "a", 1, weight=5, backup=True, sticky_id="s")
        assert again is first and (first.weight, first.backup, first.sticky_id) == (5, True, "s")
        add(backends, "a", 2)  # same id, other address: another backend (as sozu)
        assert len(backends) == 2 and backends.get("a") is first
        assert backends.remove("a", SocketAddress.parse("127.0.0.1:1"))
        assert not backends.remove("a", SocketAddress.parse("127.0.0.1:1"))
        assert [b.address.port for b in backends] == [2]
        assert backends.get("zz") is None

    def test_empty_set_selects_nothing(self) -> None:
        for algorithm in ALGORITHMS:
            assert BackendSet(algorithm).select(0.0, key=b"k") is None


class TestCandidates:
    def test_backups_only_when_no_primary_can_open(self) -> None:
        backends = cluster(2)
        add(backends, "backup", 9100, backup=True)
        assert {picked(backends) for _ in range(10)} == {"b0", "b1"}
        for b in ("b0", "b1"):
            backends.get(b).set_healthy(False)  # type: ignore[union-attr]
        assert {picked(backends) for _ in range(5)} == {"backup"}
        assert not backends.take_fail_open_warning()

    def test_fail_open_ignores_health_and_warns_once_per_outage(self) -> None:
        backends = cluster(2)
        for b in backends:
            b.set_healthy(False)
        assert {picked(backends) for _ in range(4)} == {"b0", "b1"}
        assert backends.fail_open_selections == 4
        assert backends.take_fail_open_warning()
        assert not backends.take_fail_open_warning()
        backends.get("b0").set_healthy(True)  # type: ignore[union-attr]
        assert picked(backends) == "b0"
        backends.get("b0").set_healthy(False)  # type: ignore[union-attr]
        picked(backends)
        assert backends.take_fail_open_warning()  # a new outage warns again

    def test_nothing_when_every_backend_is_backing_off(self) -> None:
        backends = cluster(2)
        for b in backends:
            b.connect_failed(now=10.0)
        assert picked(backends, now=10.5) is None
        assert picked(backends, now=11.0) is not None  # the first wait is exactly 1 s

    def test_sticky_id_first_if_it_can_open(self) -> None:
        backends = cluster(3)
        add(backends, "b2", 9002, sticky_id="two")
        assert [picked(backends, sticky_id="two") for _ in range(3)] == ["b2"] * 3
        backends.get("b2").connect_failed(0.0)  # type: ignore[union-attr]
        assert picked(backends, now=0.1, sticky_id="two") in {"b0", "b1"}
        assert picked(backends, sticky_id="unknown") is not None

    def test_a_backend_without_sticky_id_is_found_by_its_backend_id(self) -> None:
        # The cookie names the backend id when there is no sticky id (what it was set to).
        backends = cluster(3)
        assert [picked(backends, sticky_id="b1") for _ in range(3)] == ["b1"] * 3
        add(backends, "b2", 9002, sticky_id="two")
        assert picked(backends, sticky_id="b2") in {"b0", "b1", "b2"}  # "two" names it now

    def test_exclude_skips_backends_already_tried(self) -> None:
        backends = cluster(3)
        add(backends, "backup", 9100, backup=True)
        assert picked(backends, sticky_id=None, exclude=frozenset({"b0", "b1"})) == "b2"
        assert picked(backends, exclude=frozenset({"b0", "b1", "b2"})) == "backup"
        assert picked(backends, exclude=frozenset({"b0", "b1", "b2", "backup"})) is None


class TestCircuitBreaker:
    def test_backoff_grows_then_down_then_success_resets(self) -> None:
        backend = Backend("b", SocketAddress.parse("127.0.0.1:1"), rng=random.Random(1))
        now = 0.0
        for attempt in range(MAX_CONNECT_TRIES + 2):
            assert backend.can_open(now)
            backend.connect_failed(now)
            wait = backend.retry_at - now
            ceiling = 1 << min(attempt, MAX_CONNECT_TRIES)
            assert 1 <= wait <= max(1, ceiling - 1)
            assert not backend.can_open(now + wait - 0.001)
            now += wait
        assert backend.is_down and not backend.is_available
        assert backend.can_open(now)  # a down backend is still retried after its wait
        backend.connect_succeeded(0.01, now)
        assert not backend.is_down and backend.retry_at == 0.0
        assert backend.active_connections == 1

    def test_failures_during_a_wait_are_one_step(self) -> None:
        backend = Backend("b", SocketAddress.parse("127.0.0.1:1"))
        backend.connect_failed(5.0)
        retry_at = backend.retry_at
        for _ in range(10):
            backend.connect_failed(5.5)
        assert backend.retry_at == retry_at and not backend.is_down
        assert backend.failures == 11

    def test_expired_backoff_returns_backend_to_candidates(self) -> None:
        backends = cluster(2)
        backends.get("b0").connect_failed(0.0)  # type: ignore[union-attr]
        assert {picked(backends, now=0.5) for _ in range(4)} == {"b1"}
        assert {picked(backends, now=1.0) for _ in range(4)} == {"b0", "b1"}

    def test_counters_never_go_negative(self) -> None:
        backend = Backend("b", SocketAddress.parse("127.0.0.1:1"))
        backend.connection_closed()
        backend.request_finished()
        backend.request_started()
        assert (backend.active_connections, backend.active_requests) == (0, 1)


class TestAlgorithms:
    def test_round_robin_is_fair_and_does_not_rebuild_per_call(self) -> None:
        # A rebuild makes new candidate lists (`_tiers`): watched by identity, not by
        # patching `_rebuild` (compiled by mypyc, a method cannot be replaced; and its
        # tuple of three is boxed anew at each read, so its items are compared).
        def same(first: tuple[object, ...], second: tuple[object, ...]) -> bool:
            return all(a is b for a, b in zip(first, second, strict=True))

        backends = cluster(5)
        picked(backends)  # the first pick builds the candidate lists
        tiers = backends._tiers
        counts = Counter(picked(backends) for _ in range(5 * 200))
        assert set(counts.values()) == {200}
        assert same(backends._tiers, tiers)
        add(backends, "b5", 9005)
        picked(backends)
        rebuilt = backends._tiers
        assert not same(rebuilt, tiers)
        counts = Counter(picked(backends) for _ in range(6 * 10))
        assert set(counts.values()) == {10} and same(backends._tiers, rebuilt)

    @pytest.mark.parametrize(
        ("metric", "load"),
        [
            (LoadMetric.CONNECTIONS, "active_connections"),
            (LoadMetric.REQUESTS, "active_requests"),
        ],
    )
    def test_least_loaded(self, metric: LoadMetric, load: str) -> None:
        backends = cluster(3, LoadBalancingAlgorithms.LEAST_LOADED)
        backends.configure(LoadBalancingAlgorithms.LEAST_LOADED, metric)
        for b, value in zip(backends, (5, 1, 3), strict=True):
            setattr(b, load, value)
        assert picked(backends) == "b1"

    def test_least_loaded_by_connection_time(self) -> None:
        backends = cluster(2, LoadBalancingAlgorithms.LEAST_LOADED)
        backends.configure(LoadBalancingAlgorithms.LEAST_LOADED, LoadMetric.CONNECTION_TIME)
        slow, fast = list(backends)
        slow.connect_succeeded(0.5, now=100.0)
        fast.connect_succeeded(0.001, now=100.0)
        assert picked(backends, now=100.0) == fast.backend_id
        assert slow.connection_cost(100.0) > fast.connection_cost(100.0)
        assert slow.connection_cost(200.0) < 0.5  # the peak decays with time

    def test_power_of_two_picks_one_of_the_two_lightest(self) -> None:
        backends = cluster(5, LoadBalancingAlgorithms.POWER_OF_TWO)
        for b, load in zip(backends, (9, 1, 7, 2, 8), strict=True):
            b.active_connections = load
        assert {picked(backends) for _ in range(50)} == {"b1", "b3"}

    def test_weighted_random_follows_weights(self) -> None:
        backends = BackendSet(LoadBalancingAlgorithms.RANDOM, rng=random.Random(42))
        weights = {"a": 100, "b": 300, "c": 600, "zero": 0}
        for port, (name, weight) in enumerate(weights.items()):
            add(backends, name, 9000 + port, weight=weight)
        draws = 20_000
        counts = Counter(picked(backends) for _ in range(draws))
        assert counts["zero"] == 0
        for name in ("a", "b", "c"):
            expected = draws * weights[name] / 1000
            assert abs(counts[name] - expected) < 0.05 * draws, (name, counts)

    def test_random_with_all_zero_weights_is_uniform(self) -> None:
        backends = BackendSet(LoadBalancingAlgorithms.RANDOM, rng=random.Random(3))
        for i in range(2):
            add(backends, f"z{i}", 9000 + i, weight=0)
        assert {picked(backends) for _ in range(50)} == {"z0", "z1"}

    @pytest.mark.parametrize(
        "algorithm", [LoadBalancingAlgorithms.HRW, LoadBalancingAlgorithms.MAGLEV]
    )
    def test_hashing_is_deterministic_and_round_robin_without_key(
        self, algorithm: LoadBalancingAlgorithms
    ) -> None:
        one, two = cluster(4, algorithm, seed=1), cluster(4, algorithm, seed=2)
        for i in range(200):
            key = f"client-{i}".encode()
            assert picked(one, key=key) == picked(two, key=key) == picked(one, key=key)
        assert Counter(picked(one) for _ in range(40)) == {f"b{i}": 10 for i in range(4)}

    @pytest.mark.parametrize(
        "algorithm", [LoadBalancingAlgorithms.HRW, LoadBalancingAlgorithms.MAGLEV]
    )
    def test_hashing_skips_unavailable_backends(self, algorithm: LoadBalancingAlgorithms) -> None:
        backends = cluster(4, algorithm)
        keys = [f"k{i}".encode() for i in range(500)]
        before = {key: picked(backends, key=key) for key in keys}
        backends.get("b2").connect_failed(0.0)  # type: ignore[union-attr]
        after = {key: picked(backends, now=0.5, key=key) for key in keys}
        assert "b2" not in after.values()
        assert all(after[k] == before[k] for k in keys if before[k] != "b2")

    def test_maglev_shares_follow_weights(self) -> None:
        backends = BackendSet(LoadBalancingAlgorithms.MAGLEV)
        add(backends, "light", 9000, weight=100)
        add(backends, "heavy", 9001, weight=300)
        counts = Counter(picked(backends, key=f"{i}".encode()) for i in range(8000))
        assert abs(counts["heavy"] / 8000 - 0.75) < 0.03, counts

    def test_maglev_table_is_rebuilt_on_membership_change(self) -> None:
        backends = cluster(2, LoadBalancingAlgorithms.MAGLEV)
        picked(backends, key=b"x")
        table = backends._maglev
        add(backends, "b2", 9002)
        assert backends._maglev is None
        picked(backends, key=b"x")
        assert backends._maglev is not table and set(backends._maglev or []) == {0, 1, 2}


def test_module_constants() -> None:
    assert load_balancing.DEFAULT_WEIGHT == 100 and MAX_CONNECT_TRIES == 6


def test_switching_algorithm_drops_cached_hash_decisions() -> None:
    backends = cluster(8, LoadBalancingAlgorithms.HRW)
    keys = [f"k{i}".encode() for i in range(300)]
    hrw = [picked(backends, key=key) for key in keys]
    backends.configure(LoadBalancingAlgorithms.MAGLEV, None)
    maglev = [picked(backends, key=key) for key in keys]
    fresh = cluster(8, LoadBalancingAlgorithms.MAGLEV)
    assert maglev == [picked(fresh, key=key) for key in keys] != hrw
