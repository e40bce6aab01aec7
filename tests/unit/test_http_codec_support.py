"""The pure pieces around the codec: the timer wheel, forwarded heads, route policies."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Cluster, RedirectPolicy, RequestHttpFrontend
from dataplane.proxy.forwarding import (
    ConnectionContext,
    RequestIds,
    forward_request,
    forward_response,
)
from dataplane.proxy.http_head import RequestParser, ResponseParser
from dataplane.proxy.policy import Answer, Edits, decide, set_headers
from dataplane.proxy.router import Router
from dataplane.proxy.timers import NOT_FILED, TimerWheel


class Entry:
    def __init__(self) -> None:
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        self.fired: list[float] = []

    def on_timeout(self, now: float) -> None:
        self.fired.append(now)


def test_wheel_fires_after_the_deadline_and_only_once() -> None:
    wheel = TimerWheel(100.0)
    entry = Entry()
    wheel.arm(entry, 102.5)
    wheel.expire(102.0)
    assert entry.fired == []
    wheel.expire(103.0)
    assert entry.fired == [103.0]
    wheel.expire(110.0)
    assert entry.fired == [103.0]
    assert len(wheel) == 0


def test_pushing_a_deadline_later_is_lazy_and_still_honoured() -> None:
    wheel = TimerWheel(0.0)
    entry = Entry()
    wheel.arm(entry, 5.0)
    slot = entry.timer_slot
    entry.deadline = 9.0  # what the hot path does: no wheel operation
    wheel.arm(entry, 9.0)
    assert entry.timer_slot == slot
    wheel.expire(6.0)
    assert entry.fired == []  # re-filed, not fired
    wheel.expire(9.5)
    assert entry.fired == [9.5]


def test_moving_a_deadline_earlier_refiles_and_cancel_forgets() -> None:
    wheel = TimerWheel(0.0)
    early, cancelled = Entry(), Entry()
    wheel.arm(early, 60.0)
    wheel.arm(early, 2.0)
    wheel.arm(cancelled, 2.0)
    wheel.cancel(cancelled)
    wheel.expire(3.0)
    assert early.fired == [3.0] and cancelled.fired == []
    assert len(wheel) == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=50), min_size=1, max_size=30))
def test_every_entry_fires_once_not_before_its_deadline(deadlines: list[float]) -> None:
    wheel = TimerWheel(0.0)
    entries = []
    for deadline in deadlines:
        entry = Entry()
        wheel.arm(entry, deadline)
        entries.append(entry)
    now = 0.0
    while now < 60:
        now += 0.37
        wheel.expire(now)
    for entry in entries:
        assert len(entry.fired) == 1
        assert entry.deadline <= entry.fired[0] <= entry.deadline + 1.5


def test_request_ids_are_unique_ulid_shaped() -> None:
    ids = RequestIds()
    seen = {ids.next() for _ in range(1000)}
    assert len(seen) == 1000
    assert all(len(i) == 26 and i.isalnum() and i.upper() == i for i in seen)


def context() -> ConnectionContext:
    return ConnectionContext(("10.0.0.9", 5000), ("10.0.0.1", 80), "http", "Sozu-Id", False, True)


def test_forwarded_request_head() -> None:
    request = RequestParser().parse(
        b"GET /p HTTP/1.1\r\nHost: h\r\nX-Real-IP: 1.1.1.1\r\nConnection: close\r\n"
        b"Cookie: a=1; SOZUBALANCEID=b2; c=3\r\n\r\n"
    )
    head = forward_request(request, context(), b"ID", b"SOZUBALANCEID")
    assert head == (
        b"GET /p HTTP/1.1\r\nHost: h\r\nCookie: a=1; c=3"
        b"\r\nX-Forwarded-For: 10.0.0.9"
        b'\r\nForwarded: proto=http;for="10.0.0.9:5000";by=10.0.0.1'
        b"\r\nX-Forwarded-Port: 80\r\nX-Forwarded-Proto: http"
        b"\r\nX-Request-Id: ID\r\nSozu-Id: ID\r\n\r\n"
    )


def test_a_shared_head_forwards_the_same_for_each_connection_and_its_own_options() -> None:
    """Parsed heads are shared across connections; what they remember must not leak from one
    connection's options (sticky cookie, X-Real-IP elision) into another's."""
    request = RequestParser().parse(
        b"GET /p HTTP/1.1\r\nHost: h\r\nX-Real-IP: 1.1.1.1\r\nCookie: a=1; S=b2\r\n\r\n"
    )
    keeping = ConnectionContext(
        ("10.0.0.9", 5000), ("10.0.0.1", 80), "http", "Sozu-Id", False, False
    )
    plain = forward_request(request, keeping, b"ID", b"")
    assert b"\r\nX-Real-IP: 1.1.1.1\r\nCookie: a=1; S=b2\r\n" in plain
    sticky = forward_request(request, context(), b"ID", b"S")  # elides X-Real-IP, drops S
    assert b"X-Real-IP" not in sticky and b"Cookie: a=1\r\n" in sticky
    assert forward_request(request, keeping, b"ID", b"") == plain


def test_forwarded_response_head() -> None:
    response = ResponseParser().parse(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    )
    head = forward_response(
        response, b"\r\nSozu-Id: ID", b"\r\nConnection: close", b"\r\nSet-Cookie: S=x; Path=/"
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSozu-Id: ID\r\nSet-Cookie: S=x; Path=/"
        b"\r\nConnection: close\r\n\r\n"
    )


def route_for(**options: object):  # type: ignore[no-untyped-def]
    router = Router()
    front = RequestHttpFrontend(
        cluster_id="c",
        address=SocketAddress.parse("127.0.0.1:80"),
        hostname="h.example",
        **options,  # type: ignore[arg-type]
    )
    router.add_frontend(front)
    route = router.lookup("h.example", "/x", "GET")
    assert route is not None
    return route


def request(extra: bytes = b""):  # type: ignore[no-untyped-def]
    return RequestParser().parse(b"GET /x HTTP/1.1\r\nHost: h.example\r\n" + extra + b"\r\n")


def test_policy_without_anything_forwards_as_is() -> None:
    assert decide(route_for(), Cluster(cluster_id="c"), request(), "h.example", "http") is None


def test_policy_redirect_and_https_redirect() -> None:
    answer = decide(
        route_for(redirect=RedirectPolicy.PERMANENT, rewrite_port=8080),
        Cluster(cluster_id="c"),
        request(),
        "h.example",
        "http",
    )
    assert isinstance(answer, Answer) and answer.status == 301
    assert answer.variables["REDIRECT_LOCATION"] == "http://h.example:8080/x"
    cluster = Cluster(cluster_id="c", https_redirect=True, https_redirect_port=8443)
    answer = decide(route_for(), cluster, request(), "h.example", "http")
    assert isinstance(answer, Answer)
    assert answer.variables["REDIRECT_LOCATION"] == "https://h.example:8443/x"


def test_policy_basic_auth() -> None:
    digest = hashlib.sha256(b"pw").hexdigest()
    cluster = Cluster(cluster_id="c", authorized_hashes=[f"bob:{digest}"], www_authenticate="r")
    route = route_for(required_auth=True)
    refused = decide(route, cluster, request(), "h.example", "http")
    assert isinstance(refused, Answer) and refused.status == 401
    assert refused.variables["WWW_AUTHENTICATE"] == 'Basic realm="r"'
    for bad in (b"bob:nope", b"eve:pw", b"nocolon"):
        auth = b"Authorization: Basic " + base64.b64encode(bad) + b"\r\n"
        assert isinstance(decide(route, cluster, request(auth), "h.example", "http"), Answer)
    auth = b"Authorization: Basic " + base64.b64encode(b"bob:pw") + b"\r\n"
    assert decide(route, cluster, request(auth), "h.example", "http") is None
    assert isinstance(
        decide(route, Cluster(cluster_id="c"), request(auth), "h.example", "http"), Answer
    )  # no hashes: nobody gets in


def test_policy_rewrites_become_edits() -> None:
    edits = decide(
        route_for(rewrite_path="/y$PATH[1]"), Cluster(cluster_id="c"), request(), "h", "http"
    )
    assert isinstance(edits, Edits) and edits.path == "/y/x"  # $PATH[1]: the prefix tail


def test_set_headers_replaces_and_deletes() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n"
    assert set_headers(head, (("X-A", "new"), ("X-B", ""))) == (
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: new\r\n\r\n"
    )
