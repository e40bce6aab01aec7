"""Routing: host forms, path precedence, positions, route policies, invalidation."""

from __future__ import annotations

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    Header,
    HeaderPosition,
    HstsConfig,
    PathRule,
    PathRuleKind,
    RedirectPolicy,
    RequestHttpFrontend,
    RulePosition,
)
from dataplane.proxy.routing.router import Router, RouterError

ADDRESS = SocketAddress.parse("127.0.0.1:8080")
PREFIX, EQUALS, REGEX = PathRuleKind.PREFIX, PathRuleKind.EQUALS, PathRuleKind.REGEX


def front(
    hostname: str,
    cluster: str | None = "c",
    path: str = "",
    kind: PathRuleKind = PREFIX,
    method: str | None = None,
    position: RulePosition = RulePosition.TREE,
    **policy: object,
) -> RequestHttpFrontend:
    return RequestHttpFrontend(
        cluster_id=cluster,
        address=ADDRESS,
        hostname=hostname,
        path=PathRule(kind=kind, value=path),
        method=method,
        position=position,
        **policy,  # type: ignore[arg-type]
    )


def routed(router: Router, host: str, path: str = "/", method: str = "GET") -> str | None:
    route = router.lookup(host, path, method)
    return None if route is None else route.cluster_id


def make(*fronts: RequestHttpFrontend) -> Router:
    router = Router()
    for f in fronts:
        router.add_frontend(f)
    return router


class TestHosts:
    def test_exact_beats_wildcard_beats_any(self) -> None:
        router = make(
            front("*", "any"), front("*.example.com", "wild"), front("a.example.com", "a")
        )
        assert routed(router, "a.example.com") == "a"
        assert routed(router, "b.example.com") == "wild"
        assert routed(router, "example.org") == "any"

    def test_wildcard_matches_exactly_one_non_empty_label(self) -> None:
        router = make(front("*.example.com", "wild"))
        assert routed(router, "x.example.com") == "wild"
        assert routed(router, "x.y.example.com") is None
        assert routed(router, "example.com") is None
        assert routed(router, ".example.com") is None

    def test_regex_hostname_is_anchored_on_the_whole_host(self) -> None:
        router = make(front("/cdn[0-9]+/.example.com", "cdn"))
        assert routed(router, "cdn42.example.com") == "cdn"
        assert routed(router, "xcdn42.example.com") is None
        assert routed(router, "cdn42.example.com.evil") is None
        assert routed(router, "cdnx.example.com") is None

    def test_exact_host_is_lowercased_idna_and_loses_trailing_dot(self) -> None:
        router = make(front("WWW.Example.COM.", "a"), front("bücher.example", "idn"))
        assert routed(router, "www.example.com") == "a"
        assert routed(router, "xn--bcher-kva.example") == "idn"

    @pytest.mark.parametrize(
        "hostname",
        ["", "a..b", "foo.*.com", "*foo.com", "a b.com", "/unterminated", "/(/.x", "-a.com"],
    )
    def test_invalid_hostnames_are_rejected(self, hostname: str) -> None:
        with pytest.raises(RouterError):
            Router().add_frontend(front(hostname))

    def test_exact_host_without_matching_path_goes_to_post_not_wildcard(self) -> None:
        # As sozu's trie: the most specific host entry decides; no fallback to the wildcard.
        router = make(
            front("a.example.com", "a", path="/api"),
            front("*.example.com", "wild"),
            front("*", "post", position=RulePosition.POST),
        )
        assert routed(router, "a.example.com", "/api/x") == "a"
        assert routed(router, "a.example.com", "/other") == "post"


class TestPaths:
    def test_equals_beats_regex_beats_longest_prefix(self) -> None:
        router = make(
            front("h", "root", path="/"),
            front("h", "long", path="/api/v1"),
            front("h", "short", path="/api"),
            front("h", "regex", path="/api/v[0-9]+/users/.*", kind=REGEX),
            front("h", "equals", path="/api/v1/users", kind=EQUALS),
        )
        assert routed(router, "h", "/api/v1/users") == "equals"
        assert routed(router, "h", "/api/v1/users/3") == "regex"
        assert routed(router, "h", "/api/v1/other") == "long"
        assert routed(router, "h", "/api/v2") == "short"
        assert routed(router, "h", "/x") == "root"

    def test_empty_prefix_matches_everything_and_prefix_is_not_a_segment_match(self) -> None:
        router = make(front("h", "all"), front("h", "api", path="/api"))
        assert routed(router, "h", "/apix") == "api"
        assert routed(router, "h", "") == "all"

    def test_regex_path_must_match_the_whole_path(self) -> None:
        router = make(front("h", "r", path="/v[0-9]+/.*", kind=REGEX))
        assert routed(router, "h", "/v2/x") == "r"
        assert routed(router, "h", "/prefix/v2/x") is None
        assert routed(router, "h", "/vx/") is None

    def test_method_specific_rule_beats_method_less_rule_at_same_level(self) -> None:
        router = make(
            front("h", "any", path="/api"),
            front("h", "post", path="/api", method="POST"),
            front("h", "eq-get", path="/e", kind=EQUALS, method="GET"),
            front("h", "eq-any", path="/e", kind=EQUALS),
        )
        assert routed(router, "h", "/api/x", "POST") == "post"
        assert routed(router, "h", "/api/x", "GET") == "any"
        assert routed(router, "h", "/e", "GET") == "eq-get"
        assert routed(router, "h", "/e", "PUT") == "eq-any"

    def test_longer_prefix_beats_method_match(self) -> None:
        router = make(front("h", "get", path="/", method="GET"), front("h", "long", path="/api"))
        assert routed(router, "h", "/api", "GET") == "long"

    def test_method_only_rule_does_not_match_other_methods(self) -> None:
        router = make(front("h", "get", method="GET"))
        assert routed(router, "h", "/", "DELETE") is None

    def test_invalid_path_regex_is_rejected(self) -> None:
        with pytest.raises(RouterError, match="path regex"):
            Router().add_frontend(front("h", path="(", kind=REGEX))


class TestPositions:
    def test_pre_rules_run_before_the_tree_first_match_wins(self) -> None:
        router = make(
            front("a.com", "tree"),
            front("*", "acme", path="/.well-known/acme-challenge", position=RulePosition.PRE),
            front("*", "second", path="/.well-known", position=RulePosition.PRE),
        )
        assert routed(router, "a.com", "/.well-known/acme-challenge/t") == "acme"
        assert routed(router, "a.com", "/.well-known/other") == "second"
        assert routed(router, "a.com", "/") == "tree"

    def test_post_rules_run_when_the_tree_has_nothing(self) -> None:
        router = make(front("a.com", "tree"), front("*.org", "post", position=RulePosition.POST))
        assert routed(router, "x.org") == "post"
        assert routed(router, "a.com") == "tree"
        assert routed(router, "x.net") is None

    def test_linear_rules_check_method_and_regex_hosts(self) -> None:
        router = make(front("/a+/.com", "pre", method="PUT", position=RulePosition.PRE))
        assert routed(router, "aaa.com", "/", "PUT") == "pre"
        assert routed(router, "aaa.com", "/", "GET") is None


class TestChanges:
    @pytest.mark.parametrize("position", list(RulePosition))
    def test_duplicate_add_and_absent_remove_raise(self, position: RulePosition) -> None:
        router = make(front("h", "a", path="/x", position=position))
        with pytest.raises(RouterError, match="duplicate"):
            router.add_frontend(front("h", "b", path="/x", position=position))
        router.add_frontend(front("h", "b", path="/x", method="GET", position=position))
        router.remove_frontend(front("h", "a", path="/x", position=position))
        with pytest.raises(RouterError, match="no such"):
            router.remove_frontend(front("h", "a", path="/x", position=position))
        assert len(router) == 1

    def test_remove_drops_empty_host_entries(self) -> None:
        router = make(front("/r/.com", "r"), front("*", "any"), front("*.x.com", "w"))
        for f in (front("/r/.com"), front("*"), front("*.x.com")):
            router.remove_frontend(f)
        assert routed(router, "r.com") is None
        assert routed(router, "a.x.com") is None
        assert len(router) == 0

    def test_cached_decisions_are_invalidated_by_any_change(self) -> None:
        router = make(front("h", "regex", path="^/a", kind=REGEX))
        assert routed(router, "h", "/a") == "regex"
        assert routed(router, "h", "/a") == "regex"  # served from the decision cache
        router.add_frontend(front("h", "pre", position=RulePosition.PRE))
        assert routed(router, "h", "/a") == "pre"
        router.remove_frontend(front("h", position=RulePosition.PRE))
        assert routed(router, "h", "/a") == "regex"

    def test_decision_cache_is_bounded(self) -> None:
        router = make(front("h", "regex", path="/.*", kind=REGEX))
        for i in range(10_000):
            router.lookup("h", f"/{i}", "GET")
        assert len(router._decisions) <= 4096


class TestRoutePolicy:
    def test_clusterless_forward_and_unauthorized_are_deny_routes(self) -> None:
        router = make(
            front("a", None),
            front(
                "b",
                "c",
                redirect=RedirectPolicy.UNAUTHORIZED,
                headers=[Header(position=HeaderPosition.REQUEST, key="x-a", val="1")],
            ),
        )
        a, b = router.lookup("a", "/", "GET"), router.lookup("b", "/", "GET")
        assert a is not None and a.deny and a.cluster_id is None
        assert b is not None and b.deny and b.headers_request == ()

    def test_redirect_without_cluster_is_not_deny(self) -> None:
        route = make(front("a", None, redirect=RedirectPolicy.FOUND)).lookup("a", "/", "GET")
        assert route is not None and not route.deny and route.redirect_status == 302

    @pytest.mark.parametrize(
        ("policy", "status"),
        [
            (RedirectPolicy.PERMANENT, 301),
            (RedirectPolicy.FOUND, 302),
            (RedirectPolicy.PERMANENT_REDIRECT, 308),
            (RedirectPolicy.FORWARD, None),
        ],
    )
    def test_redirect_status(self, policy: RedirectPolicy, status: int | None) -> None:
        route = make(front("a", redirect=policy)).lookup("a", "/", "GET")
        assert route is not None and route.redirect_status == status

    def test_rewrite_uses_wildcard_label_and_prefix_tail(self) -> None:
        router = make(
            front(
                "*.example.com",
                "c",
                path="/api",
                rewrite_host="$HOST[1].svc",
                rewrite_path="/v2$PATH[1]",
                rewrite_port=8443,
            )
        )
        route = router.lookup("shop.example.com", "/api/items", "GET")
        assert route is not None
        assert route.rewrite("shop.example.com", "/api/items") == ("shop.svc", "/v2/items")
        assert route.rewrite_port == 8443

    def test_rewrite_uses_regex_groups(self) -> None:
        router = make(
            front(
                "/([a-z]+)-([0-9]+)/.example.com",
                "c",
                path="^/u/([0-9]+)",
                kind=REGEX,
                rewrite_path="/$HOST[2]/$HOST[1]/$PATH[1]",
            )
        )
        route = router.lookup("app-7.example.com", "/u/42", "GET")
        assert route is not None
        assert route.rewrite("app-7.example.com", "/u/42") == (None, "/7/app/42")

    @pytest.mark.parametrize("template", ["$HOST[1]", "$PATH[2]", "$FOO[0]", "a$", "$PATH[x]"])
    def test_rewrite_naming_missing_captures_is_rejected(self, template: str) -> None:
        with pytest.raises(RouterError, match="rewrite"):
            Router().add_frontend(front("a.com", path="/p", rewrite_path=template))

    def test_headers_split_by_position_and_validated(self) -> None:
        headers = [
            Header(position=HeaderPosition.REQUEST, key="x-req", val="1"),
            Header(position=HeaderPosition.RESPONSE, key="x-resp", val=""),
            Header(position=HeaderPosition.BOTH, key="x-both", val="b"),
            Header(position=HeaderPosition.HEADER_POSITION_UNSPECIFIED, key="x-no", val="n"),
        ]
        route = make(front("a", headers=headers)).lookup("a", "/", "GET")
        assert route is not None
        assert route.headers_request == (("x-req", "1"), ("x-both", "b"))
        assert route.headers_response == (("x-resp", ""), ("x-both", "b"))
        bad = [Header(position=HeaderPosition.REQUEST, key="x", val="a\r\nInjected: 1")]
        with pytest.raises(RouterError, match="header"):
            Router().add_frontend(front("a", headers=bad))

    def test_hsts_is_rendered_once(self) -> None:
        hsts = HstsConfig(enabled=True, max_age=31536000, include_subdomains=True, preload=True)
        route = make(front("a", hsts=hsts, required_auth=True)).lookup("a", "/", "GET")
        assert route is not None and route.required_auth
        assert route.hsts == "max-age=31536000; includeSubDomains; preload"
        assert not route.hsts_force_replace

    def test_invalid_rewrite_port_is_rejected(self) -> None:
        with pytest.raises(RouterError, match="rewrite_port"):
            Router().add_frontend(front("a", rewrite_port=70000))
