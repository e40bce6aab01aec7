"""A frontend's custom error pages (proxy/routing/error_pages.py, command/custom_errors_rules.py):
the error request, the routing decision that hands the policy over, and the TOML keys, CLI
flags, state file and checks that carry it."""

from __future__ import annotations

import argparse
import shlex

import pytest
from fake_host import FakeHost

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.config import parse_config
from dataplane.command.config_reader import ConfigError
from dataplane.command.custom_errors_rules import custom_errors_problem
from dataplane.command.messages import (
    CustomErrors,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.passthrough_rules import passthrough_problem
from dataplane.command.state_rules import StateError, check_http_frontend
from dataplane.command.statefile import decode_state, encode_state
from dataplane.proxy.http1.head import RequestParser
from dataplane.proxy.mux.request_route import Forward, route_request
from dataplane.proxy.routing.error_pages import ErrorPages

ADDRESS = SocketAddress.parse("127.0.0.1:8080")
PAGES = CustomErrors(codes=[404, 503], cluster_id="errors", headers={"X-Namespace": "shop"})


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}


def test_the_error_request_carries_ingress_nginxs_headers_and_no_body() -> None:
    request = RequestParser().parse(
        b"POST /shop/item?id=3 HTTP/1.1\r\nHost: a.com\r\nAccept: application/json \r\n"
        b"Content-Length: 5\r\nX-Code: 200\r\nX-Namespace: evil\r\nCookie: c=1\r\n\r\n"
    )
    head = ErrorPages(PAGES).request_head(request, 404, "ID1")
    assert head.startswith(b"GET / HTTP/1.1\r\n") and head.endswith(b"\r\n\r\n")
    headers = _headers(head)
    assert headers["x-code"] == "404"  # the client's X-Code is replaced, not kept
    assert headers["x-format"] == "application/json"
    assert headers["x-original-uri"] == "/shop/item?id=3"
    assert headers["x-request-id"] == "ID1"
    assert headers["x-namespace"] == "shop"
    assert headers["host"] == "a.com" and headers["cookie"] == "c=1"
    assert "content-length" not in headers
    RequestParser().parse(head)  # a request the listener accepts


def test_a_head_request_stays_head_and_no_accept_sends_no_x_format() -> None:
    request = RequestParser().parse(b"HEAD /x HTTP/1.1\r\nHost: a.com\r\n\r\n")
    head = ErrorPages(PAGES).request_head(request, 503, "ID2")
    assert head.startswith(b"HEAD / HTTP/1.1\r\n")
    assert "x-format" not in _headers(head)  # nginx omits an empty $http_accept


class _Holder:
    def __init__(self) -> None:
        self.pages: list[ErrorPages] = []

    def hold_connection(self, limiter: object, ip: str) -> None:
        raise AssertionError("no connection limit here")

    def serve_errors(self, pages: ErrorPages) -> None:
        self.pages.append(pages)


def test_routing_hands_the_routes_policy_to_the_holder() -> None:
    host = FakeHost()
    host.route(HttpListenerConfig(address=ADDRESS))
    for name, errors in (("err.example", PAGES), ("plain.example", None)):
        front = RequestHttpFrontend(
            address=ADDRESS, hostname=name, cluster_id="app", custom_errors=errors
        )
        host.proxy.apply(Request.of(add_http_frontend=front))
    listener = host.proxy.listeners[ADDRESS]
    holder = _Holder()
    for name in ("err.example", "plain.example"):
        request = listener.parse(f"GET / HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
        decision = route_request(listener, request, name, lambda: "127.0.0.1", 0.0, holder)  # type: ignore[arg-type]
        assert isinstance(decision, Forward)
    [pages] = holder.pages  # only the route that has them
    assert pages.codes == frozenset({404, 503}) and pages.cluster_id == "errors"


TOML = """
[clusters.app]
protocol = "http"
backends = [{ address = "127.0.0.1:9000" }]

[[clusters.app.frontends]]
address = "127.0.0.1:8080"
hostname = "a.com"
custom_errors = { %s }
"""


def test_the_toml_table_is_read_and_checked() -> None:
    config = parse_config(
        TOML % 'codes = [404, 503], cluster_id = "errors", headers = { X-Namespace = "shop" }'
    )
    front = next(r.body for r in config.generate_requests() if r.verb == "add_http_frontend")
    assert front.custom_errors == PAGES
    for bad, why in (
        ('codes = [404], cluster_id = "e", colour = 1', "colour"),
        ('cluster_id = "e"', "codes"),
        ('codes = ["404"], cluster_id = "e"', "integers"),
        ('codes = [200], cluster_id = "e"', "300..599"),
        ("codes = [404]", "cluster_id"),
        ('codes = [404], cluster_id = "e", headers = { X-Code = "1" }', "X-Code"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_config(TOML % bad)


def _request(line: str) -> Request:
    args = build_parser().parse_args(shlex.split(line))
    result: Request = args.build(args)
    return result


def test_cli_flags() -> None:
    base = "frontend https add -a 127.0.0.1:443 --hostname a.com "
    front = _request(
        base + "--error-codes 404,503 --error-cluster errors --error-header X-Namespace=shop id app"
    ).body
    assert front.custom_errors == PAGES
    assert _request(base + "id app").body.custom_errors is None
    for bad, why in (
        ("--error-cluster errors", "need --error-codes"),
        ("--error-codes 404", "needs --error-cluster"),
        ("--error-codes 4x4 --error-cluster e", "not integers"),
        ("--error-codes 404 --error-cluster e --error-header X", "NAME=VALUE"),
        ("--error-codes 200 --error-cluster e", "300..599"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            _request(base + bad + " id app")


def test_state_files_keep_it_and_checks_refuse_bad_values() -> None:
    front = RequestHttpFrontend(
        address=ADDRESS, hostname="a.com", cluster_id="app", custom_errors=PAGES
    )
    state = [
        Request.of(add_http_listener=HttpListenerConfig(address=ADDRESS)),
        Request.of(add_http_frontend=front),
    ]
    assert decode_state(encode_state(state)) == (state, [])
    check_http_frontend(front)
    assert custom_errors_problem(CustomErrors(codes=[], cluster_id="e")) == "codes is empty"
    front.custom_errors = CustomErrors(codes=[404], cluster_id="e", headers={"X-A": "a\nb"})
    with pytest.raises(StateError, match="printable"):
        check_http_frontend(front)
    front.custom_errors = PAGES
    front.cluster_id = None
    with pytest.raises(StateError, match="deny route"):
        check_http_frontend(front)
    front.cluster_id = "app"
    front.passthrough = True
    assert "custom_errors" in (passthrough_problem(front) or "")
