"""Regression tests for what the fuzz targets (fuzz/) turned up, one input each, raw bytes.

- A `Connection` header naming Host, Content-Length or Transfer-Encoding made the proxy drop
  that header while still framing the body by it: the backend got `POST` without its length
  and read the body as the next request (a desynchronisation), or got no Host. Seen while
  writing fuzz/targets/http_request.py: its property "the forwarded head parses again, same
  host and framing" fails on it. Now refused: 400 for a request, 502 for a response (the
  raw-byte cases are also in tests/unit/fixtures/http, so real workers get them too).
- A regex path rule whose repeat count is above `re`'s limit (OverflowError) or whose nesting
  is too deep (RecursionError) escaped validation: `pysozu config check` crashed with a
  traceback, and so did anything dispatching the frontend. Now a StateError / ConfigError.
  Seen while probing the config_toml and state_file targets' inputs by hand.
- A Connection option that is not a token (`Connection: x, Host: a`) was turned into the
  prefix `\r\nhost: a:` and dropped a `Host: a:80` line with it: the backend got no Host.
  Found by the suite's bounded http_request run. Options that are not tokens name no header.
"""

from __future__ import annotations

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.config import ConfigError, parse_config
from dataplane.command.messages import (
    PathRule,
    PathRuleKind,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.state import ConfigState, StateError
from dataplane.command.statefile import decode_state
from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.forwarding import ConnectionContext, forward_request
from dataplane.proxy.http1.head import RequestParser, ResponseParser
from dataplane.proxy.routing.router import Router

CONNECTION_NAMES_FRAMING = [
    b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Transfer-Encoding\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Host\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nConnection: X-A, HOST \r\nX-A: 1\r\n\r\n",
]


@pytest.mark.parametrize("head", CONNECTION_NAMES_FRAMING)
def test_a_request_whose_connection_header_names_framing_or_host_is_refused(head: bytes) -> None:
    with pytest.raises(HttpSyntaxError, match="Connection names") as refused:
        RequestParser().parse(head)
    assert refused.value.status == 400


def test_a_response_whose_connection_header_names_its_length_is_a_502() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\n"
    with pytest.raises(HttpSyntaxError, match="Connection names") as refused:
        ResponseParser().parse(head)
    assert refused.value.status == 502


def test_other_listed_headers_are_still_dropped_and_the_framing_kept() -> None:
    head = (
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: TE, X-A\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n"
    )
    request = RequestParser().parse(head)
    context = ConnectionContext(
        ("192.0.2.1", 1), ("127.0.0.1", 80), "http", "Sozu-Id", False, False
    )
    forwarded = RequestParser().parse(forward_request(request, context, b"ID", b""))
    assert (forwarded.host, forwarded.content_length) == (b"a", 2)
    assert b"X-A" not in forwarded.block


# Patterns RE2 refuses (dataplane/command/regexes.py): Python's re refused a huge repeat and
# deep nesting; RE2 takes those as literal or fine, and refuses these instead.
HUGE_REPEAT = "/a{1001}"
DEEP_NESTING = "(?=/)" + "(" * 10 + "/" + ")" * 10  # lookahead: not in sozu's regex syntax


@pytest.mark.parametrize("regex", [HUGE_REPEAT, DEEP_NESTING])
def test_a_regex_path_re_cannot_compile_is_a_state_error(regex: str) -> None:
    front = RequestHttpFrontend(
        cluster_id="app",
        address=SocketAddress.parse("127.0.0.1:80"),
        hostname="example.com",
        path=PathRule(kind=PathRuleKind.REGEX, value=regex),
    )
    with pytest.raises(StateError, match="does not compile"):
        ConfigState().dispatch(Request.of(add_http_frontend=front))


@pytest.mark.parametrize("regex", [HUGE_REPEAT, DEEP_NESTING])
def test_config_check_reports_such_a_regex(regex: str) -> None:
    text = (
        '[clusters.app]\nprotocol = "http"\n[[clusters.app.frontends]]\n'
        f'address = "127.0.0.1:80"\nhostname = "a"\npath_type = "REGEX"\npath = "{regex}"\n'
    )
    with pytest.raises(ConfigError, match="does not compile"):
        parse_config(text)


@pytest.mark.timeout(10)
def test_a_hostile_path_against_chained_repeats_is_matched_in_linear_time() -> None:
    # Python's re took 58 s on this 4 KB path (it fails the pattern after backtracking through
    # every split); RE2 (dataplane/command/regexes.py) answers at once.
    router = Router()
    front = RequestHttpFrontend(
        cluster_id="app",
        address=SocketAddress.parse("127.0.0.1:80"),
        hostname="example.com",
        path=PathRule(kind=PathRuleKind.REGEX, value="/(.*)/(.*)/(.*)/x"),
    )
    router.add_frontend(front)
    for _ in range(20):
        assert router.lookup("example.com", "/" + "a/" * 2000 + "!", "GET") is None
    assert router.lookup("example.com", "/a/b/c/x", "GET") is not None


def test_a_state_file_holding_such_a_regex_loads_as_a_refused_request() -> None:
    record = (
        b'{"id":"SAVE-0","content":{"request_type":{"ADD_HTTP_FRONTEND":{"cluster_id":"app",'
        b'"address":"127.0.0.1:80","hostname":"a","path":{"kind":1,"value":"a{1001}"}}}}}'
    )
    requests, errors = decode_state(record + b"\n\0")
    assert errors == [] and len(requests) == 1
    with pytest.raises(StateError, match="does not compile"):
        ConfigState().dispatch(requests[0])


def test_a_connection_option_that_is_not_a_token_names_no_header() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a:80\r\nConnection: x, Host: a\r\nX: 1\r\n\r\n"
    request = RequestParser().parse(head)
    context = ConnectionContext(
        ("192.0.2.1", 1), ("127.0.0.1", 80), "http", "Sozu-Id", False, False
    )
    forwarded = RequestParser().parse(forward_request(request, context, b"ID", b""))
    assert forwarded.host == b"a:80"
    assert b"\r\nX:" not in forwarded.block  # a real token still drops its header
