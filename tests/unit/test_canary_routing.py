"""A frontend's canary alternative: the rule (proxy/routing/canary.py), its checks
(command/canary_rules.py), the TOML table, the CLI flags and the state file round trip."""

from __future__ import annotations

import argparse
import shlex

import pytest

from dataplane.cli.tree import build_parser
from dataplane.command import codec
from dataplane.command.address import SocketAddress
from dataplane.command.canary_rules import canary_problem
from dataplane.command.config import parse_config
from dataplane.command.messages import Canary, Request, RequestHttpFrontend
from dataplane.command.state_rules import StateError, check_http_frontend
from dataplane.proxy.http1.head import RequestHead, RequestParser
from dataplane.proxy.routing.canary import CanaryRoute, cookie_value

pytestmark = pytest.mark.timeout(10)
ADDRESS = SocketAddress.parse("127.0.0.1:8080")


def _head(*lines: str) -> RequestHead:
    text = "GET / HTTP/1.1\r\nHost: a.com\r\n" + "".join(f"{line}\r\n" for line in lines)
    return RequestParser().parse((text + "\r\n").encode())


def _never_drawn(total: int) -> int:
    raise AssertionError("no draw expected")


def _rule(draw: object = _never_drawn, **fields: object) -> CanaryRoute:
    return CanaryRoute(Canary(cluster_id="new", **fields), draw)  # type: ignore[arg-type]


def test_a_frontend_without_canary_has_no_rule() -> None:
    assert CanaryRoute.build(None) is None


def test_header_always_and_never_without_value() -> None:
    rule = _rule(header="X-Canary")
    assert rule.chosen(_head("X-Canary: always"))
    assert rule.chosen(_head("x-canary:always  "))  # any case, trailing blanks
    assert not rule.chosen(_head("X-Canary: never"))
    assert not rule.chosen(_head("X-Canary: Always"))  # values are exact
    assert not rule.chosen(_head())


def test_header_never_beats_the_cookie_and_weight() -> None:
    rule = _rule(header="X-Canary", cookie="canary", weight=100)
    assert not rule.chosen(_head("X-Canary: never", "Cookie: canary=always"))
    assert rule.chosen(_head("X-Canary: maybe", "Cookie: canary=always"))
    assert rule.chosen(_head("X-Canary: maybe"))  # weight 100 of 100


def test_header_value_is_an_exact_match_that_falls_through_otherwise() -> None:
    rule = _rule(header="X-Region", header_value="eu-west", cookie="c")
    assert rule.chosen(_head("X-Region: eu-west"))
    assert not rule.chosen(_head("X-Region: eu-west-2"))
    assert not rule.chosen(_head("X-Region: always"))  # no always/never with a value
    assert rule.chosen(_head("X-Region: never", "Cookie: c=always"))  # falls to the cookie


def test_header_pattern_is_searched_and_the_first_header_counts() -> None:
    rule = _rule(header="User-Agent", header_pattern="Chrome/1[0-9]{2}")
    assert rule.chosen(_head("User-Agent: Mozilla Chrome/120.0"))
    assert not rule.chosen(_head("User-Agent: Chrome/99"))
    assert not rule.chosen(_head("User-Agent: curl", "User-Agent: Chrome/120"))


def test_cookie_always_never_and_other_values() -> None:
    draws = iter([0, 99])
    rule = _rule(lambda total: next(draws), cookie="Canary", weight=50)
    assert rule.chosen(_head("Cookie: a=1; canary=always"))  # names in any case
    assert not rule.chosen(_head("Cookie: Canary=never"))
    assert rule.chosen(_head("Cookie: Canary=yes"))  # weight: draw 0 < 50
    assert not rule.chosen(_head("Cookie: other=always"))  # draw 99 >= 50


def test_cookie_value_reads_several_lines_and_pairs() -> None:
    head = _head("Cookie: a=1", "Cookie: b=2; c = 3 ")
    assert cookie_value(head.cookies, b"c") == b"3"
    assert cookie_value(head.cookies, b"b") == b"2"
    assert cookie_value(head.cookies, b"z") is None


def test_weight_draws_against_the_total() -> None:
    seen: list[int] = []

    def draw(total: int) -> int:
        seen.append(total)
        return 299

    assert _rule(draw, weight=300, weight_total=1000).chosen(_head()) is True
    assert _rule(draw, weight=299, weight_total=1000).chosen(_head()) is False
    assert seen == [1000, 1000]
    assert not _rule(weight=0).chosen(_head())  # no draw at 0 or at the total
    assert _rule(weight=100).chosen(_head())


def test_the_real_draw_gives_about_the_weight() -> None:
    rule = CanaryRoute(Canary(cluster_id="new", weight=25))
    head = _head()
    picked = sum(rule.chosen(head) for _ in range(4000))
    assert 800 < picked < 1200  # 25% of 4000, more than 6 standard deviations wide


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cluster_id": ""}, "cluster_id"),
        ({"header": "X Bad"}, "header name"),
        ({"header_value": "v"}, "needs a header"),
        ({"header": "h", "header_value": "a\r\nb"}, "CR, LF"),
        ({"header": "h", "header_value": "a", "header_pattern": "b"}, "exclude"),
        ({"header": "h", "header_pattern": "("}, "does not compile"),
        ({"cookie": "a=b"}, "cookie name"),
        ({"weight_total": 0}, "weight_total"),
        ({"weight": 101}, "weight 101"),
        ({"weight": -1}, "weight -1"),
    ],
)
def test_bad_canaries_are_named(fields: dict[str, object], message: str) -> None:
    canary = Canary(**{"cluster_id": "new", **fields})  # type: ignore[arg-type]
    problem = canary_problem(canary)
    assert problem is not None and message in problem
    front = RequestHttpFrontend(cluster_id="app", address=ADDRESS, hostname="a.com", canary=canary)
    with pytest.raises(StateError, match="canary"):
        check_http_frontend(front)


def test_a_deny_route_has_no_canary() -> None:
    front = RequestHttpFrontend(address=ADDRESS, hostname="a.com", canary=Canary(cluster_id="n"))
    with pytest.raises(StateError, match="deny route"):
        check_http_frontend(front)


def test_the_canary_round_trips_through_the_wire_and_state_encoding() -> None:
    canary = Canary(cluster_id="new", header="X-C", header_pattern="^b", cookie="c", weight=7)
    front = RequestHttpFrontend(cluster_id="app", address=ADDRESS, hostname="a.com", canary=canary)
    request = Request.of(add_http_frontend=front)
    again = codec.decode(codec.encode(request), Request)
    assert again == request and again.body.canary == canary


TOML = """
[clusters.app]
protocol = "http"
backends = [{ address = "127.0.0.1:9000" }]

[[clusters.app.frontends]]
address = "127.0.0.1:8080"
hostname = "a.com"

[clusters.app.frontends.canary]
cluster_id = "new"
header = "X-Canary"
header_value = "yes"
cookie = "c"
weight = 5
weight_total = 1000
"""


def test_the_toml_table_reaches_the_frontend() -> None:
    config = parse_config(TOML)
    front = next(r.body for r in config.generate_requests() if r.verb == "add_http_frontend")
    assert front.canary == Canary(
        cluster_id="new", header="X-Canary", header_value="yes", cookie="c", weight=5,
        weight_total=1000,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('header = "X"', "cluster_id"),
        ('cluster_id = "new"\nweight = 200', "weight 200"),
        ('cluster_id = "new"\nwieght = 2', "wieght"),
        ('cluster_id = "new"\nheader_pattern = "x"', "needs a header"),
        ('cluster_id = "new"\nweight_total = 0', "weight_total"),
    ],
)
def test_bad_toml_canaries_are_config_errors(table: str, message: str) -> None:
    text = TOML.partition("cluster_id")[0] + table + "\n"
    with pytest.raises(Exception, match=message):
        parse_config(text)


def _cli(line: str) -> Request:
    args = build_parser().parse_args(shlex.split(line))
    result: Request = args.build(args)
    return result


def test_cli_flags_build_the_canary() -> None:
    request = _cli(
        "frontend https add -a 127.0.0.1:8443 --hostname a.com --canary-cluster new "
        "--canary-header X-C --canary-header-pattern '^eu' --canary-cookie c "
        "--canary-weight 30 --canary-weight-total 300 id app"
    )
    assert request.body.canary == Canary(
        cluster_id="new", header="X-C", header_pattern="^eu", cookie="c", weight=30,
        weight_total=300,
    )  # fmt: skip
    plain = _cli("frontend http add -a 127.0.0.1:80 --hostname a.com id app")
    assert plain.body.canary is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--canary-weight 5 id app", "need --canary-cluster"),
        ("--canary-cluster new deny", "needs a route to a cluster"),
        ("--canary-cluster new --canary-weight 500 id app", "weight 500"),
        ("--canary-cluster new --canary-header-value v id app", "needs a header"),
    ],
)
def test_bad_cli_canaries_are_usage_errors(flags: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        _cli(f"frontend http add -a 127.0.0.1:80 --hostname a.com {flags}")
