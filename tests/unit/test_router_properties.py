"""Router properties: host normalisation, order independence, lookup cost independent of size."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import PathRule, PathRuleKind, RequestHttpFrontend
from dataplane.proxy.routing import router as router_module
from dataplane.proxy.routing.router import Router, normalize_host

ADDRESS = SocketAddress.parse("127.0.0.1:8080")


class TestNormalizeHost:
    @pytest.mark.parametrize(
        ("raw", "host"),
        [
            (b"Example.COM", "example.com"),
            (b"example.com:8080", "example.com"),
            (b"example.com.:443", "example.com"),
            (b"example.com:65535", "example.com"),
            (b"10.0.0.1:80", "10.0.0.1"),
            (b"[::1]:8080", "[::1]"),
            (b"[2001:DB8::1]", "[2001:db8::1]"),
            (b"my_host.internal", "my_host.internal"),
        ],
    )
    def test_accepts(self, raw: bytes, host: str) -> None:
        assert normalize_host(raw) == host

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b":80",
            b"example.com:",
            b"example.com:0",
            b"example.com:65536",
            b"example.com:123456",
            b"a..b",
            b".a",
            b"a b",
            b"a\r\nb",
            b"ex\xc3\xa9.com",
            b"[::1",
            b"[zz::1]",
            b"[1.2.3.4]",
            b"example.com:80:80",
            b"a/b",
            b"a" * 300,
            b"user@host",
        ],
    )
    def test_rejects(self, raw: bytes) -> None:
        assert normalize_host(raw) is None

    @given(st.binary(max_size=300))
    def test_never_raises_and_result_is_canonical(self, raw: bytes) -> None:
        host = normalize_host(raw)
        if host is not None:
            assert host == host.lower()
            assert host.isascii() and not host.endswith(".")
            assert host.startswith("[") or ":" not in host

    @given(
        st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
        st.integers(1, 65535),
    )
    def test_port_is_stripped(self, host: str, port: int) -> None:
        assert normalize_host(f"{host.upper()}:{port}".encode()) == host


PATHS = ["", "/", "/a", "/a/b", "/a/b/c", "/b"]
RULES = (
    [(PathRuleKind.PREFIX, p, m) for p in PATHS for m in (None, "GET")]
    + [(PathRuleKind.EQUALS, p, m) for p in PATHS[1:] for m in (None, "POST")]
    + [(PathRuleKind.REGEX, r, None) for r in ("^/a/.", "b$", "^/a/b/c$")]
)
HOSTS = ["a.example.com", "*.example.com", "*", "/[a-c]\\.x/.example.com"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(HOSTS), st.sampled_from(RULES)), unique=True, max_size=25),
    st.randoms(use_true_random=False),
)
def test_tree_routing_is_independent_of_insertion_order(
    rules: list[tuple[str, tuple[PathRuleKind, str, str | None]]], rng: random.Random
) -> None:
    def build(order: list[int]) -> Router:
        router = Router()
        for i in order:
            host, (kind, value, method) = rules[i]
            router.add_frontend(
                RequestHttpFrontend(
                    cluster_id=f"c{i}",
                    address=ADDRESS,
                    hostname=host,
                    path=PathRule(kind=kind, value=value),
                    method=method,
                )
            )
        return router

    order = list(range(len(rules)))
    forward = build(order)
    rng.shuffle(order)
    shuffled = build(order)
    for host in ("a.example.com", "b.example.com", "b.x.example.com", "other.org"):
        for path in [*PATHS, "/a/b/c/d", "/zz"]:
            for method in ("GET", "POST", "PUT"):
                one, two = forward.lookup(host, path, method), shuffled.lookup(host, path, method)
                assert (one and one.cluster_id) == (two and two.cluster_id), (host, path, method)


class CountingStr(str):
    """A str that counts the comparisons routing performs on it."""

    calls = 0

    def startswith(self, *args: object) -> bool:  # type: ignore[override]
        CountingStr.calls += 1
        return super().startswith(*args)  # type: ignore[arg-type]

    def partition(self, sep: str) -> tuple[str, str, str]:  # type: ignore[override]
        CountingStr.calls += 1
        return super().partition(sep)

    def __hash__(self) -> int:
        CountingStr.calls += 1
        return super().__hash__()

    def __eq__(self, other: object) -> bool:
        CountingStr.calls += 1
        return super().__eq__(other)


def router_of(size: int) -> Router:
    """`size` frontends: exact and wildcard hosts, each with a few path rules."""
    router = Router()
    for i in range(size // 4):
        for host in (f"host{i}.example.com", f"*.zone{i}.example.com"):
            for path in ("/", "/api"):
                router.add_frontend(
                    RequestHttpFrontend(
                        cluster_id=f"c{i}",
                        address=ADDRESS,
                        hostname=host,
                        path=PathRule(value=path),
                    )
                )
    return router


def lookup_cost(router: Router, host: str, path: str) -> int:
    select = router_module._HostRules.select
    CountingStr.calls = 0
    route = router.lookup(CountingStr(host), CountingStr(path), "GET")
    assert route is not None and router_module._HostRules.select is select
    return CountingStr.calls


@pytest.mark.timeout(60)
def test_ten_thousand_frontends_route_as_cheaply_as_ten() -> None:
    small, large = router_of(12), router_of(10_000)
    assert len(large) == 10_000
    for host, path in [
        ("host1.example.com", "/api/x"),
        ("host2.example.com", "/"),
        ("a.zone1.example.com", "/api"),
        ("b.zone2.example.com", "/other"),
    ]:
        cost = lookup_cost(small, host, path)
        assert 0 < cost <= 8
        assert lookup_cost(large, host, path) == cost
