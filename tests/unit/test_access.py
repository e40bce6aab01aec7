"""A frontend's access rules (proxy/routing/access.py): sources, client address, rate limits."""

from __future__ import annotations

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.config import parse_config
from dataplane.command.messages import RateLimit, RequestHttpFrontend
from dataplane.command.state_rules import StateError, check_http_frontend
from dataplane.proxy.routing import access
from dataplane.proxy.routing.access import Access, Networks, RateLimiter, client_address

ADDRESS = SocketAddress.parse("127.0.0.1:8080")


def _front(**fields: object) -> RequestHttpFrontend:
    return RequestHttpFrontend(cluster_id="app", address=ADDRESS, hostname="a.com", **fields)  # type: ignore[arg-type]


def test_a_frontend_without_rules_has_no_access_object() -> None:
    assert Access.build(_front()) is None
    assert Access.build(_front(max_body_size=0)) is None  # 0: no limit, as nginx's 0


def test_networks_match_v4_and_v6_and_refuse_unreadable_addresses() -> None:
    networks = Networks(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    assert "10.1.2.3" in networks and "192.0.2.7" in networks
    assert "2001:db8::1" in networks
    assert "11.0.0.1" not in networks and "192.0.2.8" not in networks
    assert "not-an-ip" not in networks and "" not in networks


def test_allow_list_refuses_everybody_else_with_403() -> None:
    rules = Access(_front(allowed_sources=["10.0.0.0/8"]))
    assert rules.refusal("10.0.0.1", 0.0) == 0
    assert rules.refusal("192.0.2.1", 0.0) == 403
    assert rules.refusal("garbage", 0.0) == 403


def test_deny_list_refuses_its_networks_and_unreadable_addresses() -> None:
    rules = Access(_front(denied_sources=["192.0.2.0/24"]))
    assert rules.refusal("192.0.2.9", 0.0) == 403
    assert rules.refusal("198.51.100.1", 0.0) == 0
    assert rules.refusal("garbage", 0.0) == 403  # fail closed


def test_the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() -> None:
    trusted = Networks(["10.0.0.0/8"])
    assert client_address("192.0.2.1", b"203.0.113.5", trusted) == "192.0.2.1"
    assert client_address("10.0.0.2", None, trusted) == "10.0.0.2"
    assert client_address("10.0.0.2", b"203.0.113.5", None) == "10.0.0.2"
    # right-most hop that is not a trusted proxy (nginx's real_ip_recursive)
    assert client_address("10.0.0.2", b"198.51.100.1, 203.0.113.5, 10.0.0.9", trusted) == (
        "203.0.113.5"
    )
    assert client_address("10.0.0.2", b"10.0.0.7, 10.0.0.9", trusted) == "10.0.0.7"
    assert client_address("10.0.0.2", b"::ffff:203.0.113.5", trusted) == "203.0.113.5"


def _limiter(rate: float, burst: int = 0, exempt: list[str] | None = None) -> RateLimiter:
    return RateLimiter(RateLimit(rate=rate, burst=burst, exempt_sources=exempt or []))


def test_rate_limit_without_burst_admits_one_request_per_period() -> None:
    limiter = _limiter(rate=2.0)  # one every 0.5 s
    assert limiter.admit("a", 0.0)
    assert not limiter.admit("a", 0.1)
    assert not limiter.admit("a", 0.4)
    assert limiter.admit("a", 0.5)
    assert limiter.admit("b", 0.5)  # clients are counted apart


def test_rate_limit_burst_admits_burst_plus_one_at_once_then_drains() -> None:
    limiter = _limiter(rate=1.0, burst=5)
    assert [limiter.admit("a", 10.0) for _ in range(8)] == [True] * 6 + [False] * 2
    assert limiter.admit("a", 11.0)  # one drained
    assert not limiter.admit("a", 11.0)
    assert [limiter.admit("a", 20.0) for _ in range(7)] == [True] * 6 + [False]


def test_rate_limit_exempt_sources_are_never_limited_nor_remembered() -> None:
    limiter = _limiter(rate=1.0, exempt=["10.0.0.0/8"])
    assert all(limiter.admit("10.0.0.1", 0.0) for _ in range(100))
    assert len(limiter) == 0


def test_rate_limit_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "MAX_CLIENTS", 64)
    limiter = _limiter(rate=0.001)  # nothing drains
    for n in range(1000):
        assert limiter.admit(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(limiter) <= 64


def test_rate_limit_status_and_order_after_source_lists() -> None:
    rules = Access(
        _front(
            allowed_sources=["10.0.0.0/8"],
            rate_limits=[RateLimit(rate=1.0, status=429)],
        )
    )
    assert rules.refusal("10.0.0.1", 0.0) == 0
    assert rules.refusal("10.0.0.1", 0.1) == 429
    assert rules.refusal("192.0.2.1", 0.1) == 403  # the source list first, nothing counted


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"allowed_sources": ["10.0.0.0/33"]}, "allowed_sources"),
        ({"denied_sources": ["10.0.0.1/8"]}, "bits set after its prefix"),
        ({"rate_limits": [RateLimit(rate=0.0)]}, "positive"),
        ({"rate_limits": [RateLimit(rate=1.0, burst=-1)]}, "burst"),
        ({"rate_limits": [RateLimit(rate=1.0, status=418)]}, "429 or 503"),
        ({"rate_limits": [RateLimit(rate=1.0, exempt_sources=["x"])]}, "exempt_sources"),
        ({"max_body_size": -1}, "max_body_size"),
    ],
)
def test_invalid_access_fields_are_state_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(StateError, match=message):
        check_http_frontend(_front(**fields))


def test_the_toml_keys_reach_the_frontend() -> None:
    config = parse_config(
        """
[clusters.app]
protocol = "http"
backends = [{ address = "127.0.0.1:9000" }]

[[clusters.app.frontends]]
address = "127.0.0.1:8080"
hostname = "a.com"
allowed_sources = ["10.0.0.0/8"]
denied_sources = ["10.9.0.0/16"]
max_body_size = 1024

[[clusters.app.frontends.rate_limits]]
rate = 0.5
burst = 3
status = 429
exempt_sources = ["10.1.0.0/16"]
"""
    )
    front = next(r.body for r in config.generate_requests() if r.verb == "add_http_frontend")
    assert front.allowed_sources == ["10.0.0.0/8"]
    assert front.denied_sources == ["10.9.0.0/16"]
    assert front.max_body_size == 1024
    assert front.rate_limits == [
        RateLimit(rate=0.5, burst=3, status=429, exempt_sources=["10.1.0.0/16"])
    ]


def test_a_rate_limit_without_rate_is_a_config_error() -> None:
    with pytest.raises(Exception, match="rate"):
        parse_config(
            """
[clusters.app]
protocol = "http"
frontends = [{ address = "127.0.0.1:8080", hostname = "a.com", rate_limits = [{ burst = 3 }] }]
"""
        )


def test_limits_naming_one_zone_share_their_counts() -> None:
    zoned = RateLimit(rate=1.0, burst=1, zone="default/web")
    first = Access(_front(rate_limits=[zoned]))
    second = Access(_front(rate_limits=[zoned]))
    alone = Access(_front(rate_limits=[RateLimit(rate=1.0, burst=1)]))
    assert first.limiters[0] is second.limiters[0]
    assert alone.limiters[0] is not first.limiters[0]
    assert first.refusal("10.0.0.1", 0.0) == 0
    assert second.refusal("10.0.0.1", 0.0) == 0  # burst 1: two at once
    assert first.refusal("10.0.0.1", 0.0) == 503  # the zone's third, whichever route
    assert alone.refusal("10.0.0.1", 0.0) == 0
    other = Access(_front(rate_limits=[RateLimit(rate=2.0, burst=1, zone="default/web")]))
    assert other.limiters[0] is not first.limiters[0]  # another rate: another zone
