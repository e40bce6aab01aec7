"""Consistent-hashing stability and round-robin fairness, as properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import AddBackend, LoadBalancingAlgorithms, LoadBalancingParams
from dataplane.proxy.balancing.hashing import (
    build_maglev_table,
    hash_bytes,
    maglev_table_size,
    mix,
)
from dataplane.proxy.balancing.load_balancing import BackendSet

KEYS = [
    f"10.{i // 256 % 256}.{i % 256}.{i // 65536}:{i * 7 % 65536}".encode() for i in range(10_000)
]


def cluster(algorithm: LoadBalancingAlgorithms, ports: list[int]) -> BackendSet:
    backends = BackendSet(algorithm, rng=random.Random(0))
    for port in ports:
        backends.add(
            AddBackend(
                cluster_id="c",
                backend_id=f"b{port}",
                address=SocketAddress.parse(f"10.0.0.1:{port}"),
            )
        )
    return backends


def shared_skip(ports: list[int]) -> bool:
    """Whether two of these backends get the same Maglev skip (hashing.build_maglev_table)."""
    size = maglev_table_size(len(ports))
    skips = [
        mix(hash_bytes(f"10.0.0.1:{port}".encode()) ^ 0x736B69705F5F) % (size - 1) + 1
        for port in ports
    ]
    return len(set(skips)) < len(skips)


def assignment(backends: BackendSet) -> list[str]:
    result = []
    for key in KEYS:
        backend = backends.select(0.0, key=key)
        assert backend is not None
        result.append(backend.backend_id)
    return result


@pytest.mark.timeout(120)
@settings(max_examples=8, deadline=None)
@given(
    algorithm=st.sampled_from([LoadBalancingAlgorithms.HRW, LoadBalancingAlgorithms.MAGLEV]),
    ports=st.lists(st.integers(1, 65535), min_size=2, max_size=20, unique=True),
)
@example(algorithm=LoadBalancingAlgorithms.MAGLEV, ports=[1670, 9425, 1])  # a shared skip
def test_adding_one_backend_moves_about_one_in_n_keys(
    algorithm: LoadBalancingAlgorithms, ports: list[int]
) -> None:
    *existing, newcomer = ports
    backends = cluster(algorithm, existing)
    before = assignment(backends)
    backends.add(
        AddBackend(
            cluster_id="c",
            backend_id=f"b{newcomer}",
            address=SocketAddress.parse(f"10.0.0.1:{newcomer}"),
        )
    )
    after = assignment(backends)
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    ideal = len(KEYS) / len(ports)
    bound = ideal * 1.25 + 0.02 * len(KEYS)
    if algorithm is LoadBalancingAlgorithms.MAGLEV and shared_skip(ports):
        # Two backends whose permutations step by the same skip (1 pair in 5,002) fill the
        # table in lockstep: with two or three backends, Maglev then moves up to about twice
        # the ideal share (6,147 of 10,000 keys for ports 1670, 9425 then 1).
        bound = ideal * 2
    assert len(moved) <= bound, (len(moved), ideal)
    if algorithm is LoadBalancingAlgorithms.HRW:
        # Rendezvous is exact: a key only ever moves to the newcomer.
        assert all(new == f"b{newcomer}" for _, new in moved)


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 12), rounds=st.integers(1, 30), offset=st.integers(0, 50))
def test_round_robin_is_fair_from_any_starting_point(count: int, rounds: int, offset: int) -> None:
    backends = cluster(LoadBalancingAlgorithms.ROUND_ROBIN, list(range(1, count + 1)))
    for _ in range(offset):
        backends.select(0.0)
    seen: dict[str, int] = {}
    for _ in range(count * rounds):
        backend = backends.select(0.0)
        assert backend is not None
        seen[backend.backend_id] = seen.get(backend.backend_id, 0) + 1
    assert sorted(seen.values()) == [rounds] * count


@settings(max_examples=25, deadline=None)
@given(weights=st.lists(st.integers(1, 1000), min_size=1, max_size=8))
def test_maglev_table_is_full_and_weight_proportional(weights: list[int]) -> None:
    size = 5003
    table = build_maglev_table([mix(i + 1) for i in range(len(weights))], weights, size)
    assert len(table) == size and min(table) >= 0
    total = sum(weights)
    for index, weight in enumerate(weights):
        share = table.count(index)
        assert abs(share - weight * size / total) <= len(weights)


@pytest.mark.parametrize("algorithm", [LoadBalancingAlgorithms.HRW, LoadBalancingAlgorithms.MAGLEV])
def test_hashing_spreads_keys_evenly_and_by_weight(algorithm: LoadBalancingAlgorithms) -> None:
    backends = cluster(algorithm, list(range(1, 11)))
    counts: dict[str, int] = {}
    for backend_id in assignment(backends):
        counts[backend_id] = counts.get(backend_id, 0) + 1
    assert len(counts) == 10
    assert all(abs(count - 1000) < 150 for count in counts.values()), counts
    heavy = backends.get("b10")
    assert heavy is not None
    backends.add(
        AddBackend(
            cluster_id="c",
            backend_id="b10",
            address=heavy.address,
            load_balancing_parameters=LoadBalancingParams(weight=1000),
        )
    )
    share = assignment(backends).count("b10") / len(KEYS)
    assert abs(share - 1000 / 1900) < 0.04, share
