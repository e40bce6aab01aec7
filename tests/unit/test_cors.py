"""A frontend's CORS policy (proxy/routing/cors.py, command/cors_rules.py): its checks, its
compiled matcher, its headers, and the TOML keys, CLI flags and state file that carry it."""

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
    CorsPolicy,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.state_rules import StateError, check_http_frontend
from dataplane.command.statefile import decode_state, encode_state
from dataplane.proxy.mux.request_route import Forward, Refusal, route_request
from dataplane.proxy.routing.cors import Cors, CorsValue, edited_cors, with_cors
from dataplane.proxy.routing.policy import set_headers
from dataplane.proxy.routing.route import Route
from dataplane.proxy.routing.rules import HostPattern, PathPattern, RouterError

ADDRESS = SocketAddress.parse("127.0.0.1:8080")
DEFAULT_HEADERS = (
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,"
    "Range,Authorization"
)


def _front(**fields: object) -> RequestHttpFrontend:
    return RequestHttpFrontend(cluster_id="app", address=ADDRESS, hostname="a.com", **fields)  # type: ignore[arg-type]


def _block(*fields: str) -> bytes:
    return b"".join(b"\r\n" + field.encode() for field in fields)


def test_defaults_are_ingress_nginxs() -> None:
    headers = dict(Cors(CorsPolicy()).headers(b"") or ())
    assert headers == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "GET, PUT, POST, DELETE, PATCH, OPTIONS",
        "Access-Control-Allow-Headers": DEFAULT_HEADERS,
        "Access-Control-Max-Age": "1728000",
    }


def test_listed_origins_are_echoed_and_others_get_nothing() -> None:
    cors = Cors(
        CorsPolicy(
            allow_origins=["https://app.example.com", "http://*.example.org:8080", "null"],
            expose_headers=["X-Total"],
            allow_credentials=False,
        )
    )
    found = cors.headers(_block("Host: a.com", "Origin: https://APP.example.com "))
    assert found is not None
    assert dict(found) == {
        "Access-Control-Allow-Origin": "https://APP.example.com",  # as sent, spaces trimmed
        "Access-Control-Allow-Methods": "GET, PUT, POST, DELETE, PATCH, OPTIONS",
        "Access-Control-Allow-Headers": DEFAULT_HEADERS,
        "Access-Control-Expose-Headers": "X-Total",
        "Access-Control-Max-Age": "1728000",
    }
    assert all(isinstance(value, CorsValue) for _, value in found)
    assert cors.headers(_block("origin:http://eu.example.org:8080")) is not None
    assert cors.headers(_block("Origin: null")) is not None
    for refused in (
        "Origin: http://a.b.example.org:8080",  # the wildcard is one label
        "Origin: http://eu.example.org",  # another port
        "Origin: http://.example.org:8080",
        "Origin: https://app.example.com.evil.net",
        "Origin: xhttps://app.example.com",  # anchored at both ends
        "Origin: https://appXexample.com",  # dots are literal
        "X-Origin: https://app.example.com",
    ):
        assert cors.headers(_block(refused)) is None, refused
    assert cors.headers(b"") is None
    two = _block("Origin: https://app.example.com", "Origin: https://app.example.com")
    assert cors.headers(two) is None  # ambiguous: fail closed


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"allow_origins": []}, "at least one origin"),
        ({"allow_origins": ["example.com"]}, "not \\*, null"),
        ({"allow_origins": ["https://a.*.example.com"]}, "not \\*, null"),
        ({"allow_origins": ["https://a.com/path"]}, "not \\*, null"),
        ({"allow_origins": ["https://a.com\r\nX: y"]}, "not \\*, null"),
        ({"allow_origins": ["*", "https://a.com"]}, "cannot be listed with others"),
        ({"allow_methods": ["GET", "PO ST"]}, "allow_methods: 'PO ST' is not an HTTP token"),
        ({"allow_headers": ["X-A\r\nInjected: 1"]}, "allow_headers"),
        ({"expose_headers": ["X-A\n"]}, "expose_headers"),
        ({"allow_headers": [""]}, "allow_headers"),
        ({"max_age": -1}, "max_age"),
    ],
)
def test_bad_values_are_clear_errors(fields: dict[str, object], message: str) -> None:
    policy = CorsPolicy(**fields)  # type: ignore[arg-type]
    with pytest.raises(StateError, match=message):
        check_http_frontend(_front(cors=policy))
    with pytest.raises(RouterError, match=message):
        Cors(policy)


def test_routes_without_a_policy_and_deny_routes_have_none() -> None:
    host, path = HostPattern.parse("a.com"), PathPattern.parse(_front().path)
    assert Route.build(_front(), host, path).cors is None
    deny = RequestHttpFrontend(address=ADDRESS, hostname="a.com", cors=CorsPolicy())
    assert Route.build(deny, host, path).cors is None
    assert Route.build(_front(cors=CorsPolicy()), host, path).cors is not None


def test_answers_carry_the_headers_and_preflight_is_a_204() -> None:
    headers = Cors(CorsPolicy(max_age=5)).headers(b"")
    assert headers is not None
    answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    edited = with_cors(answer, 503, headers)
    assert edited.startswith(b"HTTP/1.1 503 Service Unavailable\r\nAccess-Control-Allow-Origin: *")
    assert edited.endswith(b"Content-Length: 0\r\n\r\n")
    preflight = with_cors(answer, 204, headers)
    assert preflight.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"\r\nAccess-Control-Max-Age: 5\r\n" in preflight
    assert b"\r\nContent-Length: 0\r\n" in preflight and preflight.endswith(b"\r\n\r\n")
    # After forwarding, answers find them among the route's response edits.
    edits = (("Strict-Transport-Security", "max-age=1"), *headers, ("X-Other", "1"))
    assert edited_cors(edits) == headers


def test_the_toml_table_takes_defaults_and_refuses_unknown_keys() -> None:
    toml = """
[clusters.app]
protocol = "http"
backends = [{ address = "127.0.0.1:9000" }]

[[clusters.app.frontends]]
address = "127.0.0.1:8080"
hostname = "a.com"
cors = { allow_origins = ["https://*.a.com"], expose_headers = ["X-Total"], max_age = 60%s }
"""
    config = parse_config(toml % "")
    front = next(r.body for r in config.generate_requests() if r.verb == "add_http_frontend")
    assert front.cors == CorsPolicy(
        allow_origins=["https://*.a.com"], expose_headers=["X-Total"], max_age=60
    )
    assert front.cors.allow_credentials is True
    with pytest.raises(ConfigError, match="allow_orgins"):
        parse_config(toml % ', allow_orgins = ["*"]')
    with pytest.raises(ConfigError, match="'GE T' is not an HTTP token"):
        parse_config(toml % ', allow_methods = ["GE T"]')


def test_the_policy_survives_the_state_file() -> None:
    requests = [
        Request.of(add_http_listener=HttpListenerConfig(address=ADDRESS)),
        Request.of(
            add_http_frontend=_front(
                cors=CorsPolicy(allow_origins=["https://a.com"], allow_credentials=False, max_age=0)
            )
        ),
    ]
    assert decode_state(encode_state(requests)) == (requests, [])


def _request(line: str) -> Request:
    args = build_parser().parse_args(shlex.split(line))
    result: Request = args.build(args)
    return result


def test_cli_flags() -> None:
    base = "frontend https add -a 127.0.0.1:443 --hostname a.com "
    assert _request(base + "id app").body.cors is None
    assert _request(base + "--cors id app").body.cors == CorsPolicy()
    front = _request(
        base + "--cors --cors-allow-origin 'https://a.com, https://*.b.com' "
        "--cors-allow-methods 'GET,POST' --cors-allow-headers X-A "
        "--cors-expose-headers '*, X-Total' --cors-allow-credentials false "
        "--cors-max-age 30 id app"
    ).body
    assert front.cors == CorsPolicy(
        allow_origins=["https://a.com", "https://*.b.com"],
        allow_methods=["GET", "POST"],
        allow_headers=["X-A"],
        expose_headers=["*", "X-Total"],
        allow_credentials=False,
        max_age=30,
    )
    with pytest.raises(argparse.ArgumentTypeError, match="need --cors"):
        _request(base + "--cors-max-age 5 id app")
    with pytest.raises(argparse.ArgumentTypeError, match="cors origin"):
        _request(base + "--cors --cors-allow-origin a.com id app")


def test_empty_lists_send_no_header() -> None:
    found = Cors(CorsPolicy(allow_methods=[], allow_headers=[])).headers(b"")
    assert found is not None
    names = [name for name, _ in found]
    assert "Access-Control-Allow-Methods" not in names
    assert "Access-Control-Allow-Headers" not in names


def test_route_request_answers_preflights_and_edits_responses() -> None:
    host = FakeHost()
    host.route(HttpListenerConfig(address=ADDRESS))
    policy = CorsPolicy(allow_origins=["https://app.example.com"])
    cors_front = RequestHttpFrontend(
        address=ADDRESS, hostname="cors.example", cluster_id="app", cors=policy
    )
    host.proxy.apply(Request.of(add_http_frontend=cors_front))
    listener = host.proxy.listeners[ADDRESS]

    def decide(name: str, head: str) -> Forward | Refusal:
        request = listener.parse(head.encode() + b"\r\n")
        return route_request(listener, request, name, lambda: "127.0.0.1", 0.0, None)  # type: ignore[arg-type]

    plain = decide("example.com", "GET / HTTP/1.1\r\nHost: example.com\r\nOrigin: https://x\r\n")
    assert isinstance(plain, Forward) and plain.edits is None  # no policy: nothing added
    origin = "Origin: https://app.example.com\r\n"
    preflight = decide("cors.example", f"OPTIONS / HTTP/1.1\r\nHost: cors.example\r\n{origin}")
    assert isinstance(preflight, Refusal) and preflight.status == 204
    assert preflight.cors is not None and preflight.cors[0][1] == "https://app.example.com"
    allowed = decide("cors.example", f"GET / HTTP/1.1\r\nHost: cors.example\r\n{origin}")
    assert isinstance(allowed, Forward) and allowed.edits is not None
    assert allowed.edits.response_headers[0] == (
        "Access-Control-Allow-Origin",
        "https://app.example.com",
    )
    other = decide(
        "cors.example", "OPTIONS / HTTP/1.1\r\nHost: cors.example\r\nOrigin: https://x\r\n"
    )
    assert isinstance(other, Forward) and other.edits is None  # to the backend, untouched


def test_set_headers_appends_the_block_or_replaces_the_backends_fields() -> None:
    policy = CorsPolicy(allow_origins=["https://a.com"], allow_credentials=False, max_age=9)
    found = Cors(policy).headers(_block("Origin: https://a.com"))
    assert found is not None
    edits = (*found, ("X-Route", "1"))
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    appended = set_headers(plain, edits)
    assert appended.startswith(plain[:-2] + b"Access-Control-Allow-Origin: https://a.com\r\n")
    assert appended.endswith(b"Access-Control-Max-Age: 9\r\nX-Route: 1\r\n\r\n")
    own = b"HTTP/1.1 200 OK\r\nACCESS-CONTROL-ALLOW-ORIGIN: *\r\nAccess-Control-Max-Age: 1\r\n\r\n"
    replaced = set_headers(own, edits)
    assert b"ACCESS-CONTROL-ALLOW-ORIGIN" not in replaced and b"Max-Age: 1\r\n" not in replaced
    assert replaced.count(b"Access-Control-Allow-Origin: https://a.com\r\n") == 1
    assert replaced.endswith(b"Access-Control-Max-Age: 9\r\nX-Route: 1\r\n\r\n")
    assert set_headers(appended, edits).count(b"Access-Control-Max-Age") == 1
