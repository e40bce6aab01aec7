"""Routing on the normalised path: parser, router, listener and policies together (issue 16)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    Cluster,
    HttpListenerConfig,
    PathRule,
    PathRuleKind,
    RedirectPolicy,
    RequestHttpFrontend,
)
from dataplane.proxy.clusters import HttpProxy
from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.head import RequestHead, RequestParser
from dataplane.proxy.http1.request_path import route_path
from dataplane.proxy.listener import HttpListener
from dataplane.proxy.routing.policy import Answer, Edits, decide, rewrite_request_head
from dataplane.proxy.routing.router import Router

ADDRESS = SocketAddress.parse("127.0.0.1:8080")
PREFIX, EQUALS, REGEX = PathRuleKind.PREFIX, PathRuleKind.EQUALS, PathRuleKind.REGEX


def front(
    cluster: str | None, path: str, kind: PathRuleKind = PREFIX, **policy: object
) -> RequestHttpFrontend:
    return RequestHttpFrontend(
        cluster_id=cluster,
        address=ADDRESS,
        hostname="h.example",
        path=PathRule(kind=kind, value=path),
        **policy,  # type: ignore[arg-type]
    )


def parse(target: bytes) -> RequestHead:
    return RequestParser().parse(b"GET " + target + b" HTTP/1.1\r\nHost: h.example\r\n\r\n")


def listener_with(*fronts: RequestHttpFrontend) -> HttpListener:
    listener = HttpListener(HttpProxy(0, 0), HttpListenerConfig(address=ADDRESS))
    for each in fronts:
        listener.add_frontend(each)
    return listener


def routed(listener: HttpListener, target: bytes) -> str | None:
    request = parse(target)
    route, _ = listener.lookup("h.example", request.path, request.method)
    if route is None:
        return None
    return "deny" if route.deny else route.cluster_id


class TestParser:
    def test_the_target_is_kept_and_the_route_path_is_normalised(self) -> None:
        request = parse(b"/x/../%61dmin?q=/../y")
        assert request.path == "/x/../%61dmin?q=/../y"
        assert request.route_path == "/admin"
        assert request.line == b"GET /x/../%61dmin?q=/../y HTTP/1.1"  # forwarded as sent

    @pytest.mark.parametrize(
        "target", [b"/a%2Fb", b"/a%00b", b"/a#b", b"/%zz", b"/../etc/passwd", b"http://h.example#x"]
    )
    def test_unnormalisable_targets_are_400(self, target: bytes) -> None:
        with pytest.raises(HttpSyntaxError) as raised:
            parse(target)
        assert raised.value.status == 400

    def test_absolute_form_without_a_path_routes_on_the_root(self) -> None:
        request = parse(b"http://h.example?q=1")
        assert (request.path, request.route_path) == ("/?q=1", "/")
        assert parse(b"http://h.example/%61dmin").route_path == "/admin"


class TestRouting:
    def test_query_strings_do_not_defeat_path_rules(self) -> None:
        listener = listener_with(
            front("foo", "/foo", EQUALS), front("bbb", "/aaa/bbb"), front("aaa", "/aaa")
        )
        assert routed(listener, b"/foo?x=1") == "foo"
        assert routed(listener, b"/foo?") == "foo"
        assert routed(listener, b"/aaa/bbb?x=1") == "bbb"
        assert routed(listener, b"/aaa/?x=/aaa/bbb") == "aaa"

    @pytest.mark.parametrize(
        "target", [b"/admin", b"/%61dmin", b"/x/../admin", b"/./admin", b"//admin", b"/admin?x"]
    )
    @pytest.mark.parametrize("kind", [EQUALS, PREFIX])
    def test_no_spelling_of_admin_bypasses_its_rule(
        self, target: bytes, kind: PathRuleKind
    ) -> None:
        listener = listener_with(front("public", "/"), front("admin", "/admin", kind))
        assert routed(listener, target) == "admin"
        denying = listener_with(front("public", "/"), front(None, "/admin", kind))
        assert routed(denying, target) == "deny"

    def test_regex_rules_see_the_normalised_path(self) -> None:
        listener = listener_with(front("public", "/"), front("admin", "/admin(/.*)?", REGEX))
        assert routed(listener, b"/x/../admin/panel?y=1") == "admin"
        assert routed(listener, b"/%61dmin") == "admin"

    def test_rule_values_are_normalised_too(self) -> None:
        listener = listener_with(
            front("public", "/"), front("cafe", "/caf%c3%a9", EQUALS), front("tilde", "/%7Eu/")
        )
        assert routed(listener, b"/caf%C3%A9") == "cafe"
        assert routed(listener, b"/caf%c3%a9") == "cafe"
        assert routed(listener, b"/~u/x") == "tilde"

    def test_rules_that_normalise_alike_tie_on_their_text(self) -> None:
        one, two = front("one", "/%61dmin", EQUALS), front("two", "/admin", EQUALS)
        for order in ((one, two), (two, one)):
            router = Router()
            for each in order:
                router.add_frontend(each)
            route = router.lookup("h.example", "/admin", "GET")
            assert route is not None and route.cluster_id == "one"  # "/%61dmin" < "/admin"
            router.remove_frontend(one)
            route = router.lookup("h.example", "/admin", "GET")
            assert route is not None and route.cluster_id == "two"

    def test_a_rule_that_can_never_match_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING, logger="dataplane.worker"):
            listener_with(front("q", "/search?q=1", EQUALS), front("ok", "/ok"))
        assert len(caplog.records) == 1
        assert "'/search?q=1' can never match" in caplog.text

    def test_the_decision_cache_is_keyed_by_the_target_as_sent(self) -> None:
        listener = listener_with(front("public", "/"), front("admin", "/admin", EQUALS))
        assert routed(listener, b"/admin?x=1") == "admin"
        assert routed(listener, b"/admin?x=2") == "admin"
        assert routed(listener, b"/adminx") == "public"
        # Lookups without the parser's check fail closed.
        assert listener.lookup("h.example", "/a%2Fb", b"GET") == (None, False)


class TestPolicies:
    def route(self, listener: HttpListener, request: RequestHead):  # type: ignore[no-untyped-def]
        route, _ = listener.lookup("h.example", request.path, request.method)
        assert route is not None
        return route

    def test_a_path_rewrite_keeps_the_query_and_captures_the_normalised_path(self) -> None:
        listener = listener_with(front("api", "/api/", rewrite_path="/v2/$PATH[1]"))
        request = parse(b"/api/./users//7?x=1&y=/..")
        edits = decide(
            self.route(listener, request), Cluster(cluster_id="api"), request, "h", "http"
        )
        assert isinstance(edits, Edits) and edits.path == "/v2/users/7?x=1&y=/.."
        head = b"GET /api/./users//7?x=1&y=/.. HTTP/1.1\r\nHost: h\r\n\r\n"
        assert rewrite_request_head(head, request, edits).startswith(
            b"GET /v2/users/7?x=1&y=/.. HTTP/1.1\r\n"
        )

    def test_redirects_keep_the_target_as_sent(self) -> None:
        listener = listener_with(front("c", "/old", redirect=RedirectPolicy.PERMANENT))
        request = parse(b"/old?x=1")
        answer = decide(
            self.route(listener, request), Cluster(cluster_id="c"), request, "h", "http"
        )
        assert isinstance(answer, Answer)
        assert answer.variables["REDIRECT_LOCATION"] == "http://h/old?x=1"
        redirecting = listener_with(
            front("c", "/old", redirect=RedirectPolicy.PERMANENT, rewrite_path="/new$PATH[1]")
        )
        request = parse(b"/old/a?x=1")
        route = self.route(redirecting, request)
        answer = decide(route, Cluster(cluster_id="c"), request, "h", "http")
        assert isinstance(answer, Answer)
        assert answer.variables["REDIRECT_LOCATION"] == "http://h/new/a?x=1"


_PIECES = st.sampled_from(
    ["/", "//", "/.", "/..", "admin", "api", "x", "%61", "%2e", "%7E", "?", "?q=/admin", "."]
)
_SPELLINGS = st.lists(_PIECES, max_size=8).map(lambda pieces: "/" + "".join(pieces))
_EVERY_KIND = listener_with(
    front("public", "/"),
    front("admin", "/admin", EQUALS),
    front("api", "/api/"),
    front(None, "/x/admin"),
    front("rx", "/admin/[a-z]+", REGEX),
)


@given(_SPELLINGS)
def test_a_target_routes_as_its_normalised_path_would(target: str) -> None:
    try:
        normalised = route_path(target)
    except HttpSyntaxError:
        return
    assert routed(_EVERY_KIND, target.encode()) == routed(_EVERY_KIND, normalised.encode())
