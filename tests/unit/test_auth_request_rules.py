"""A frontend's `auth_request` (external authorisation, docs/access-control.md): its checks,
the wire and state round trip, the TOML table, the CLI flags, and the precomputed policy
(routing/auth_request.py): the sub-request head and the signin URL."""

from __future__ import annotations

import argparse
import shlex

import pytest

from dataplane.cli.tree import build_parser
from dataplane.command import codec
from dataplane.command.address import SocketAddress
from dataplane.command.auth_request_rules import auth_request_problem
from dataplane.command.config import parse_config
from dataplane.command.messages import (
    AuthRequest,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError, check_http_frontend
from dataplane.proxy.http1.head import RequestParser
from dataplane.proxy.routing.auth_request import AuthPolicy

pytestmark = pytest.mark.timeout(10)
ADDRESS = SocketAddress.parse("127.0.0.1:8080")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cluster_id": ""}, "cluster_id"),
        ({"path": "check"}, "origin-form"),
        ({"path": "/a b"}, "origin-form"),
        ({"method": "GE T"}, "not a method"),
        ({"response_headers": ["X Y"]}, "not a header name"),
        ({"response_headers": ["X"] * 65}, "at most 64"),
        ({"signin": "https://x/\r\n"}, "signin"),
        ({"signin_redirect_param": "a&b"}, "not a query name"),
        ({"host": "a b"}, "host"),
    ],
)
def test_bad_policies_are_named(fields: dict[str, object], message: str) -> None:
    auth = AuthRequest(**{"cluster_id": "auth", **fields})  # type: ignore[arg-type]
    problem = auth_request_problem(auth)
    assert problem is not None and message in problem
    front = RequestHttpFrontend(
        cluster_id="app", address=ADDRESS, hostname="a.com", auth_request=auth
    )
    with pytest.raises(StateError, match="auth_request"):
        check_http_frontend(front)


def test_a_deny_route_has_no_auth_request() -> None:
    auth = AuthRequest(cluster_id="auth")
    front = RequestHttpFrontend(address=ADDRESS, hostname="a.com", auth_request=auth)
    with pytest.raises(StateError, match="deny route"):
        check_http_frontend(front)


def test_the_policy_round_trips_through_the_wire_and_the_state() -> None:
    auth = AuthRequest(
        cluster_id="auth", path="/c?x=1", method="POST", response_headers=["X-U"],
        signin="https://l/s", signin_redirect_param="next", request_redirect="/r", host="h",
    )  # fmt: skip
    front = RequestHttpFrontend(cluster_id="app", address=ADDRESS, hostname="a.com")
    front.auth_request = auth
    request = Request.of(add_http_frontend=front)
    again = codec.decode(codec.encode(request), Request)
    assert again == request and again.body.auth_request == auth
    state = ConfigState()
    state.dispatch(Request.of(add_http_listener=HttpListenerConfig(address=ADDRESS)))
    state.dispatch(request)
    fronts = [r.body for r in state.generate_requests() if r.verb == "add_http_frontend"]
    assert [front.auth_request for front in fronts] == [auth]


TOML = """
[clusters.app]
protocol = "http"
backends = [{ address = "127.0.0.1:9000" }]

[[clusters.app.frontends]]
address = "127.0.0.1:8080"
hostname = "a.com"

[clusters.app.frontends.auth_request]
cluster_id = "auth"
path = "/oauth2/auth"
response_headers = ["X-Auth-Request-User"]
signin = "https://login/start"
"""


def test_the_toml_table_reaches_the_frontend() -> None:
    config = parse_config(TOML)
    front = next(r.body for r in config.generate_requests() if r.verb == "add_http_frontend")
    assert front.auth_request == AuthRequest(
        cluster_id="auth", path="/oauth2/auth", response_headers=["X-Auth-Request-User"],
        signin="https://login/start",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('path = "/x"', "cluster_id"),
        ('cluster_id = "auth"\npath = "x"', "origin-form"),
        ('cluster_id = "auth"\npaht = "/x"', "paht"),
    ],
)
def test_bad_toml_policies_are_config_errors(table: str, message: str) -> None:
    text = TOML.partition("cluster_id")[0] + table + "\n"
    with pytest.raises(Exception, match=message):
        parse_config(text)


def _cli(line: str) -> Request:
    args = build_parser().parse_args(shlex.split(line))
    result: Request = args.build(args)
    return result


def test_cli_flags_build_the_policy() -> None:
    request = _cli(
        "frontend http add -a 127.0.0.1:80 --hostname a.com --auth-cluster auth "
        "--auth-path /check --auth-method POST --auth-response-header X-A "
        "--auth-response-header X-B --auth-signin https://l/s --auth-host auth.local id app"
    )
    assert request.body.auth_request == AuthRequest(
        cluster_id="auth", path="/check", method="POST", response_headers=["X-A", "X-B"],
        signin="https://l/s", host="auth.local",
    )  # fmt: skip
    assert (
        _cli("frontend http add -a 127.0.0.1:80 --hostname a.com id app").body.auth_request is None
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--auth-path /x id app", "need --auth-cluster"),
        ("--auth-cluster auth deny", "needs a route to a cluster"),
        ("--auth-cluster auth --auth-method 'A B' id app", "not a method"),
    ],
)
def test_bad_cli_policies_are_usage_errors(flags: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        _cli(f"frontend http add -a 127.0.0.1:80 --hostname a.com {flags}")


def test_the_sub_request_keeps_headers_drops_the_body_framing_and_adds_the_originals() -> None:
    policy = AuthPolicy(AuthRequest(cluster_id="auth", path="/c?x=1", request_redirect="/r"), "")
    request = RequestParser().parse(
        b"POST /up?a=1 HTTP/1.1\r\nHost: a.com\r\nContent-Length: 3\r\nX-K: v\r\n\r\n"
    )
    forwarded = b"POST /up?a=1 HTTP/1.1\r\nHost: a.com\r\nContent-Length: 3\r\nX-K: v\r\n\r\n"
    head = policy.request_head(forwarded, request, "https")
    assert head == (
        b"GET /c?x=1 HTTP/1.1\r\nHost: a.com\r\nX-K: v\r\n"
        b"X-Original-URL: https://a.com/up?a=1\r\nX-Original-Method: POST\r\n"
        b"X-Sent-From: nginx-ingress-controller\r\nX-Auth-Request-Redirect: /r\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("signin", "location"),
    [
        ("https://l/s", "https://l/s?rd=https://a.com:8443/p%3Fq%3D1"),
        ("https://l/s?x=1", "https://l/s?x=1&rd=https://a.com:8443/p%3Fq%3D1"),
        (
            "https://l/s?rd=$scheme://$host$escaped_request_uri",
            "https://l/s?rd=https://a.com/p%3Fq%3D1",
        ),
        (
            "https://$http_host/oauth2/start",
            "https://a.com:8443/oauth2/start?rd=https://a.com:8443/p%3Fq%3D1",
        ),
    ],
)
def test_signin_locations(signin: str, location: str) -> None:
    policy = AuthPolicy(AuthRequest(cluster_id="auth", signin=signin), "")
    request = RequestParser().parse(b"GET /p?q=1 HTTP/1.1\r\nHost: a.com:8443\r\n\r\n")
    assert policy.signin_location(request, "https") == location
