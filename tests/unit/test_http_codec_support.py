"""The pure pieces around the codec: the timer wheel, forwarded heads, route policies."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Cluster, RedirectPolicy, RequestHttpFrontend
from dataplane.proxy.http1.forwarding import (
    ConnectionContext,
    RequestIds,
    TrustedProxies,
    forward_request,
    forward_response,
)
from dataplane.proxy.http1.head import RequestParser, ResponseParser
from dataplane.proxy.routing.policy import Answer, Edits, decide, set_headers
from dataplane.proxy.routing.router import Router
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


def test_request_ids_count_in_hex_across_the_rendered_part() -> None:
    """The last 16 characters count up as one 64-bit hex number, across the 4 digits added
    per id into the 12 rendered ahead, and the time part stays in front."""
    ids = RequestIds()
    first = last = ids.next()
    for _ in range(70_000):  # more than one carry into the first 12 digits
        previous, last = last, ids.next()
        if previous[:10] == last[:10]:  # each id is the one before plus one, byte carries too
            assert int(last[10:], 16) == int(previous[10:], 16) + 1, (previous, last)
    assert last[:10] == first[:10] or last[:10] > first[:10]  # (a second may have passed)
    assert int(last[10:], 16) - int(first[10:], 16) == 70_000


def context() -> ConnectionContext:
    return ConnectionContext(("10.0.0.9", 5000), ("10.0.0.1", 80), "http", "Sozu-Id", False, True)


def test_a_plain_head_from_an_untrusted_peer_is_forwarded_whole() -> None:
    """The usual case (no claims to strip, no sticky cookie, no upgrade), rendered in one
    join: the same lines as the general case, with or without the client's request id."""
    parser = RequestParser()
    request = parser.parse(
        b"GET /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nCookie: S=1\r\n\r\n"
    )
    forwarded = (
        b"\r\nX-Forwarded-For: 10.0.0.9"
        b'\r\nForwarded: proto=http;for="10.0.0.9:5000";by=10.0.0.1'
        b"\r\nX-Forwarded-Port: 80\r\nX-Forwarded-Proto: http"
    )
    # No sticky name: the one join; a sticky name the client's cookies lack: the general case.
    for sticky_name in (b"", b"OTHER"):
        head = forward_request(request, context(), b"ID", sticky_name)
        assert head == (
            b"GET /p HTTP/1.1\r\nHost: h\r\nCookie: S=1"
            + forwarded
            + b"\r\nX-Request-Id: ID\r\nSozu-Id: ID\r\n\r\n"
        )
    with_id = parser.parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: mine\r\n\r\n")
    assert forward_request(with_id, context(), b"ID", b"") == (
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: mine" + forwarded + b"\r\nSozu-Id: ID\r\n\r\n"
    )


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
    trusted = TrustedProxies(["10.0.0.0/24"])  # a trusted peer's X-Real-IP is kept
    keeping = ConnectionContext(
        ("10.0.0.9", 5000), ("10.0.0.1", 80), "http", "Sozu-Id", False, False, trusted
    )
    plain = forward_request(request, keeping, b"ID", b"")
    assert b"\r\nX-Real-IP: 1.1.1.1\r\nCookie: a=1; S=b2\r\n" in plain
    sticky = forward_request(request, context(), b"ID", b"S")  # elides X-Real-IP, drops S
    assert b"X-Real-IP" not in sticky and b"Cookie: a=1\r\n" in sticky
    assert forward_request(request, keeping, b"ID", b"") == plain


CLAIMS = (
    b"GET /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https"
    b"\r\nx-forwarded-proto: https\r\nX-Forwarded-Port: 443\r\nX-Real-IP: 6.6.6.6"
    b"\r\nX-FORWARDED-PROTO: https\r\nX-Real-IP: 7.7.7.7\r\nX-Kept: 1\r\n\r\n"
)
OURS = (
    b"\r\nX-Forwarded-For: 10.0.0.9"
    b'\r\nForwarded: proto=http;for="10.0.0.9:5000";by=10.0.0.1'
    b"\r\nX-Forwarded-Port: 80\r\nX-Forwarded-Proto: http"
)


def claims_context(networks: list[str] | None, send: bool = False, elide: bool = False):  # type: ignore[no-untyped-def]
    trusted = TrustedProxies(networks) if networks is not None else None
    peer, public = ("10.0.0.9", 5000), ("10.0.0.1", 80)
    return ConnectionContext(peer, public, "http", "Sozu-Id", send, elide, trusted)


def test_an_untrusted_peer_cannot_claim_anything() -> None:
    """Issue 16 (5): a plain-HTTP client's X-Forwarded-Proto/-Port, X-Real-IP, X-Forwarded-For
    and Forwarded are replaced by what the proxy saw, however they are spelled or repeated."""
    request = RequestParser().parse(CLAIMS)
    for networks in (None, ["10.1.0.0/16", "2001:db8::/32"]):  # none, or not this peer
        context = claims_context(networks)
        assert not context.trusted
        head = forward_request(request, context, b"ID", b"")
        assert head == (
            b"GET /p HTTP/1.1\r\nHost: h\r\nX-Kept: 1"
            + OURS
            + b"\r\nX-Request-Id: ID\r\nSozu-Id: ID\r\n\r\n"
        )
    sent = forward_request(request, claims_context(None, send=True), b"ID", b"")
    assert sent.count(b"X-Real-IP") == 1 and b"\r\nX-Real-IP: 10.0.0.9\r\n" in sent


def test_a_trusted_peer_is_appended_to_as_sozu_does() -> None:
    request = RequestParser().parse(CLAIMS)
    context = claims_context(["10.0.0.0/24"])
    assert context.trusted
    head = forward_request(request, context, b"ID", b"")
    assert b"\r\nX-Forwarded-For: 6.6.6.6, 10.0.0.9\r\n" in head
    assert (
        b'\r\nForwarded: for=6.6.6.6;proto=https, proto=http;for="10.0.0.9:5000";by=10.0.0.1'
        in head
    )
    assert head.lower().count(b"x-forwarded-proto: https") == 2  # the peer's lines, kept
    assert b"Proto: http\r" not in head
    assert b"X-Forwarded-Port: 443\r\n" in head and b"Port: 80" not in head
    assert b"X-Real-IP: 6.6.6.6\r\n" in head and b"X-Real-IP: 7.7.7.7\r\n" in head
    elided = forward_request(request, claims_context(["10.0.0.9"], elide=True), b"ID", b"")
    assert b"X-Real-IP" not in elided  # every line of it, not only the last


def test_a_head_without_forwarding_headers_is_forwarded_alike_whatever_the_trust() -> None:
    request = RequestParser().parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    plain = forward_request(request, claims_context(None), b"ID", b"")
    assert forward_request(request, claims_context(["10.0.0.9"]), b"ID", b"") == plain
    assert (
        plain
        == b"GET / HTTP/1.1\r\nHost: h" + OURS + b"\r\nX-Request-Id: ID\r\nSozu-Id: ID\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("networks", "peer", "trusted"),
    [
        (["10.0.0.0/8"], "10.255.0.1", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["10.0.0.0/8"], "::ffff:10.0.0.1", True),  # an IPv4 client on a dual-stack socket
        (["192.168.1.7"], "192.168.1.7", True),
        (["192.168.1.7"], "192.168.1.8", False),
        (["2001:db8::/32"], "2001:db8:1::5", True),
        (["2001:db8::/32"], "2001:db9::5", False),
        (["2001:db8::/32"], "10.0.0.1", False),
        (["10.0.0.0/8"], "fe80::1%eth0", False),
        (["fe80::/10"], "fe80::1%eth0", True),
        ([], "10.0.0.1", False),
    ],
)
def test_trusted_proxies_match_the_peer(networks: list[str], peer: str, trusted: bool) -> None:
    context = ConnectionContext(
        (peer, 1), ("10.0.0.1", 80), "http", "S", False, False, TrustedProxies(networks)
    )
    assert context.trusted is trusted


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
