"""A frontend's connection limit (proxy/routing/conn_limit.py, nginx's `limit_conn`): the
counts, zones, the routing decision that takes a count, and the TOML keys, CLI flags, state
file and checks that carry it."""

from __future__ import annotations

import argparse
import shlex

import pytest
from fake_host import FakeHost

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.config import parse_config
from dataplane.command.config_reader import ConfigError
from dataplane.command.messages import (
    ConnectionLimit,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.passthrough_rules import passthrough_problem
from dataplane.command.state_rules import StateError, check_http_frontend
from dataplane.command.statefile import decode_state, encode_state
from dataplane.proxy.mux.request_route import Forward, Refusal, route_request
from dataplane.proxy.routing.conn_limit import TOO_MANY, ConnLimiter, conn_limiter_for

ADDRESS = SocketAddress.parse("127.0.0.1:8080")


def _limit(most: int = 2, **fields: object) -> ConnectionLimit:
    return ConnectionLimit(max_concurrent_per_client=most, **fields)  # type: ignore[arg-type]


def test_counts_go_up_to_the_limit_and_back_to_nothing() -> None:
    limiter = ConnLimiter(_limit(2))
    assert limiter.acquire("10.0.0.1") == 1
    assert limiter.acquire("10.0.0.1") == 1
    assert limiter.acquire("10.0.0.1") == -1  # a third in flight: refused, not counted
    assert limiter.acquire("10.0.0.2") == 1  # another client has its own count
    assert limiter.counts == {"10.0.0.1": 2, "10.0.0.2": 1}
    limiter.release("10.0.0.1")
    assert limiter.acquire("10.0.0.1") == 1
    for ip in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        limiter.release(ip)
    assert limiter.counts == {}  # an address at zero is forgotten: memory is what is in flight
    limiter.release("10.0.0.9")  # never held: nothing happens, nothing goes negative
    assert limiter.counts == {}


def test_exempt_sources_are_never_counted() -> None:
    limiter = ConnLimiter(_limit(1, exempt_sources=["10.0.0.0/8"]))
    assert [limiter.acquire("10.1.2.3") for _ in range(5)] == [0] * 5
    assert limiter.counts == {}
    assert limiter.acquire("192.0.2.1") == 1
    assert limiter.acquire("192.0.2.1") == -1


def test_a_zone_is_shared_and_an_unnamed_limit_is_not() -> None:
    a, b = conn_limiter_for(_limit(3, zone="ns/web")), conn_limiter_for(_limit(3, zone="ns/web"))
    assert a is b
    assert conn_limiter_for(_limit(4, zone="ns/web")) is not a  # another maximum: its own
    assert conn_limiter_for(_limit(3)) is not conn_limiter_for(_limit(3))
    assert conn_limiter_for(None) is None


class _Holder:
    def __init__(self) -> None:
        self.held: list[tuple[ConnLimiter, str]] = []

    def hold_connection(self, limiter: ConnLimiter, ip: str) -> None:
        self.held.append((limiter, ip))


def test_routing_takes_a_count_and_refuses_beyond_the_limit() -> None:
    host = FakeHost()
    host.route(HttpListenerConfig(address=ADDRESS))
    front = RequestHttpFrontend(
        address=ADDRESS, hostname="lim.example", cluster_id="app", connection_limit=_limit(1)
    )
    host.proxy.apply(Request.of(add_http_frontend=front))
    listener = host.proxy.listeners[ADDRESS]
    request = listener.parse(b"GET / HTTP/1.1\r\nHost: lim.example\r\n\r\n")
    holder = _Holder()

    def decide(ip: str) -> Forward | Refusal:
        return route_request(listener, request, "lim.example", lambda: ip, 0.0, holder)  # type: ignore[return-value]

    first = decide("192.0.2.7")
    assert isinstance(first, Forward)
    limiter, ip = holder.held[0]
    assert ip == "192.0.2.7" and limiter.counts == {ip: 1}
    second = decide("192.0.2.7")
    assert isinstance(second, Refusal) and (second.status, second.message) == (503, TOO_MANY)
    assert len(holder.held) == 1  # a refused request holds nothing
    assert isinstance(decide("192.0.2.8"), Forward)
    limiter.release("192.0.2.7")
    assert isinstance(decide("192.0.2.7"), Forward)  # given back: served again
    other = listener.parse(b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n")
    plain = route_request(listener, other, "other.example", lambda: "192.0.2.7", 0.0, holder)  # type: ignore[arg-type]
    assert isinstance(plain, Refusal) and plain.status == 404  # not this route: not counted
    assert len(holder.held) == 3


def test_the_toml_table_is_read_and_checked() -> None:
    toml = """
[clusters.app]
protocol = "http"
backends = [{ address = "127.0.0.1:9000" }]

[[clusters.app.frontends]]
address = "127.0.0.1:8080"
hostname = "a.com"
connection_limit = { %s zone = "z", exempt_sources = ["10.0.0.0/8"] }
"""
    config = parse_config(toml % "max_concurrent_per_client = 10,")
    front = next(r.body for r in config.generate_requests() if r.verb == "add_http_frontend")
    assert front.connection_limit == ConnectionLimit(
        max_concurrent_per_client=10, zone="z", exempt_sources=["10.0.0.0/8"]
    )
    with pytest.raises(ConfigError, match="max_concurrent_per_client"):
        parse_config(toml % "")
    with pytest.raises(ConfigError, match="max_concurrent_per_client"):
        parse_config(toml % "max_concurrent_per_client = 0,")


def _request(line: str) -> Request:
    args = build_parser().parse_args(shlex.split(line))
    result: Request = args.build(args)
    return result


def test_cli_flags_build_the_limit() -> None:
    base = "frontend http add -a 127.0.0.1:8080 --hostname a.com "
    front = _request(
        base + "--connection-limit 5 --connection-limit-zone z "
        "--connection-limit-exempt 10.0.0.0/8 --connection-limit-status 429 id app"
    ).body
    assert front.connection_limit == ConnectionLimit(
        max_concurrent_per_client=5, status=429, exempt_sources=["10.0.0.0/8"], zone="z"
    )
    assert _request(base + "id app").body.connection_limit is None
    with pytest.raises(argparse.ArgumentTypeError, match="--connection-limit"):
        _request(base + "--connection-limit-zone z id app")


def test_state_files_keep_it_and_checks_refuse_bad_values() -> None:
    front = RequestHttpFrontend(
        address=ADDRESS, hostname="a.com", cluster_id="app", connection_limit=_limit(7)
    )
    state = [
        Request.of(add_http_listener=HttpListenerConfig(address=ADDRESS)),
        Request.of(add_http_frontend=front),
    ]
    assert decode_state(encode_state(state)) == (state, [])
    for bad, why in (
        (_limit(0), "max_concurrent_per_client"),
        (_limit(1, status=418), "429 or 503"),
        (_limit(1, exempt_sources=["10.0.0.1/8"]), "exempt_sources"),
    ):
        front.connection_limit = bad
        with pytest.raises(StateError, match=why):
            check_http_frontend(front)
    front.connection_limit = _limit(1)
    front.passthrough = True
    assert "connection_limit" in (passthrough_problem(front) or "")
