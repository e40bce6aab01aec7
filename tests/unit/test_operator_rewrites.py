"""use-regex, rewrite-target, x-forwarded-prefix and server-alias (operator/rewrites.py),
rendered and then routed by the dataplane's own Router: what a request matches and how its
path is rewritten, against ingress-nginx's documented behaviour. Pure: no sockets."""

from __future__ import annotations

import itertools
import re

import pytest
from ingress_operator.claims import ClaimIndex
from ingress_operator.model import Ingress, IngressClass, ObjectKey, TlsSecret, parse_ingress
from ingress_operator.regex_paths import regex_rule, regex_rules
from ingress_operator.render import Rendered
from ingress_operator.rewrites import parse_rewrite
from ingress_operator.settings import RenderSettings
from ingress_operator.tls_hosts import TlsHosts
from ingress_operator.webhook import Context, judge
from test_operator_render import go, ingress, rule

from dataplane.command.messages import PathRuleKind
from dataplane.command.regexes import compile_regex
from dataplane.proxy.routing.router import Router

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
OFF = RenderSettings()
IS = "ImplementationSpecific"


def router(rendered: Rendered, verb: str = "add_https_frontend") -> Router:
    table = Router()
    for request in rendered.requests:
        if request.verb == verb:
            table.add_frontend(request.body)
    return table


def where(rendered: Rendered, host: str, path: str) -> tuple[str | None, str | None] | None:
    """(cluster, rewritten path or None) the request goes to; None: no route (404)."""
    route = router(rendered).lookup(host, path, "GET")
    if route is None:
        return None
    return route.cluster_id, route.rewrite(host, path)[1]


def problems(rendered: Rendered) -> list[tuple[str, str]]:
    return [(p.reason, p.message) for p in rendered.problems if p.reason != "ServiceNotFound"]


def svc(name: str) -> str:
    return f"default/{name}:80"


# -- the regex: a full match equals nginx's `~* "^<path>"` --------------------------------------

PATTERNS = [
    "/foo/.*",
    "/something(/|$)(.*)",
    "/api/v[0-9]+",
    "/a|/b",
    "/(a|b)(c)?",
    "/x$",
    "/caf[eé]",
    "/",
    "/foo/bar/(.+)",
]
PATHS = ["/", "/foo", "/foo/", "/FOO/bar", "/something", "/something/new/x", "/Something/",
         "/api/v12/users", "/api/v", "/x", "/x/", "/xb", "/b", "/zz/b", "/ac", "/BC", "/foo/bar/1",
         "/café", "/a\nb"]  # fmt: skip


@pytest.mark.parametrize(("pattern", "path"), list(itertools.product(PATTERNS, PATHS)))
def test_a_regex_rule_matches_what_nginx_matches(pattern: str, path: str) -> None:
    rule_ = regex_rule(pattern)
    assert rule_.kind == PathRuleKind.REGEX
    compiled = re.compile(rule_.value)
    nginx = re.compile("^" + pattern, re.IGNORECASE).search(path)
    ours = compiled.fullmatch(path)
    assert (ours is not None) == (nginx is not None)
    if ours is not None and nginx is not None and "|" not in pattern.split("(")[0]:
        assert ours.groups() == nginx.groups()  # $1.. are the path's own groups
        assert compiled.groups == re.compile(pattern).groups


def test_regex_rules_sort_as_ingress_nginx_sorts_locations() -> None:
    """Longest path first; equal lengths: the greater path in byte order first."""
    paths = ["/", "/ab", "/a.", "/a..", "/b", "/zz", "/api/v[0-9]+", "/é"]
    nginx = sorted(sorted(paths, reverse=True), key=lambda p: -len(p.encode()))
    ours = sorted(paths, key=lambda p: regex_rule(p).value)
    assert ours == nginx


def test_a_prefix_path_on_a_regex_host_keeps_its_two_locations() -> None:
    assert [r.value for r in regex_rules("Prefix", "/foo", own=False)] == [
        regex_rule("/foo/").value,
        regex_rule("/foo").value,
    ]
    assert len(regex_rules("Prefix", "/foo", own=True)) == 1
    assert len(regex_rules("Prefix", "/", own=False)) == 1
    assert len(regex_rules("Exact", "/foo", own=False)) == 1
    assert regex_rules("ImplementationSpecific", "", own=True) == (regex_rule("/"),)


# -- rendering and routing --------------------------------------------------------------------


def test_the_ingress_nginx_path_priority_example() -> None:
    """docs/user-guide/ingress-path-matching.md: one Ingress with rewrite-target makes every
    path of the host a case-insensitive regex, tried longest first. (The docs' second path,
    Prefix `/foo/bar/`, is left out: controller/location.go splits Prefix `/foo/bar` into
    `/foo/bar/` and `/foo/bar`, so the first claim on `/foo/bar/` wins; that is a Conflict.)"""
    plain = ingress(
        "test-ingress-1",
        [rule("test.com", ("/foo/bar", "Prefix", "service1"), ("/foo/bar/x", "Exact", "service2"))],
    )
    regex = ingress(
        "test-ingress-2",
        [rule("test.com", ("/foo/bar/(.+)", IS, "service3"))],
        created="2026-01-02T00:00:00Z",
        annotations={NGINX + "rewrite-target": "/$1"},
    )
    other = ingress("other", [rule("other.com", ("/foo/bar", "Prefix", "service1"))])
    rendered = go(plain, regex, other, settings=ON)
    assert problems(rendered) == []
    assert where(rendered, "test.com", "/foo/bar/1") == (svc("service3"), "/1")
    assert where(rendered, "test.com", "/foo/bar/x") == (svc("service3"), "/x")  # longer
    assert where(rendered, "test.com", "/foo/bar/xyzzy") == (svc("service3"), "/xyzzy")
    assert where(rendered, "test.com", "/foo/bar/") == (svc("service1"), None)
    assert where(rendered, "test.com", "/foo/bar") == (svc("service1"), None)
    assert where(rendered, "test.com", "/FOO/BARX") == (svc("service1"), None)  # ~* "^/foo/bar"
    assert where(rendered, "test.com", "/Foo/Bar/Baz") == (svc("service3"), "/Baz")
    assert where(rendered, "test.com", "/x/foo/bar") is None  # anchored at the start
    # Another host keeps the Ingress API's element-wise Prefix match.
    assert where(rendered, "other.com", "/foo/bar/x") == (svc("service1"), None)
    assert where(rendered, "other.com", "/foo/barx") is None


def test_a_conflict_on_a_regex_path_names_the_path() -> None:
    first = ingress(
        "first",
        [rule("c.example", ("/a(.*)", IS, "one"))],
        annotations={NGINX + "use-regex": "true"},
    )
    second = ingress(
        "second",
        [rule("c.example", ("/a(.*)", IS, "two"))],
        created="2026-01-02T00:00:00Z",
        annotations={NGINX + "use-regex": "true"},
    )
    rendered = go(first, second, settings=ON)
    message = "route c.example ~* ^/a(.*) is already served by older Ingress default/first"
    assert problems(rendered) == [("Conflict", message)]
    assert where(rendered, "c.example", "/abc") == (svc("one"), None)


def test_rewrite_target_with_capture_groups() -> None:
    body = ingress(
        "rewrite",
        [rule("rewrite.bar.com", ("/something(/|$)(.*)", IS, "http-svc"))],
        annotations={NGINX + "use-regex": "true", NGINX + "rewrite-target": "/$2"},
    )
    rendered = go(body, settings=ON)
    assert problems(rendered) == []
    for path, expected in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
        ("/SOMETHING/a/b", "/a/b"),
    ]:
        assert where(rendered, "rewrite.bar.com", path) == (svc("http-svc"), expected)
    assert where(rendered, "rewrite.bar.com", "/somethingelse") is None


def test_a_missing_group_is_empty_and_literal_targets_replace_the_whole_path() -> None:
    body = ingress(
        "r",
        [rule("r.example", ("/api", "Prefix", "app"))],
        annotations={"pysozu.io/rewrite-target": "/v2/$1$3"},  # no groups at all
    )
    rendered = go(body, settings=OFF)
    assert problems(rendered) == []
    assert where(rendered, "r.example", "/api/users") == (svc("app"), "/v2/")
    assert where(rendered, "r.example", "/apix") == (svc("app"), "/v2/")  # ~* "^/api"


def test_a_target_equal_to_the_path_is_no_rewrite_and_no_regex() -> None:
    root = ingress(
        "same",
        [rule("s.example", ("/", "Prefix", "app"))],
        annotations={NGINX + "rewrite-target": "/"},
    )
    bar = ingress("bar", [rule("s.example", ("/bar", "Prefix", "bar"))])
    rendered = go(root, bar, settings=ON)
    assert where(rendered, "s.example", "/bar/x") == (svc("bar"), None)
    assert where(rendered, "s.example", "/barx") == (svc("app"), None)  # element-wise Prefix
    # A path other than the target rewrites, and makes the host a regex host.
    root = ingress(
        "same",
        [rule("s.example", ("/", "Prefix", "app"), ("/x", "Prefix", "x"))],
        annotations={NGINX + "rewrite-target": "/"},
    )
    rendered = go(root, bar, settings=ON)
    assert where(rendered, "s.example", "/x/1") == (svc("x"), "/")
    assert where(rendered, "s.example", "/barx") == (svc("bar"), None)  # ~* "^/bar"
    assert where(rendered, "s.example", "/other") == (svc("app"), None)


def test_use_regex_without_rewrite_matches_case_insensitively() -> None:
    body = ingress(
        "re",
        [rule("re.example", ("/api/v[0-9]+", IS, "app"), ("/static", "Exact", "files"))],
        annotations={NGINX + "use-regex": "True"},  # Go's ParseBool
    )
    rendered = go(body, settings=ON)
    assert problems(rendered) == []
    assert where(rendered, "re.example", "/API/V2/users") == (svc("app"), None)
    assert where(rendered, "re.example", "/api/v") is None
    assert where(rendered, "re.example", "/static/x") == (svc("files"), None)  # Exact: ~* too


def test_x_forwarded_prefix_rides_with_the_rewrite() -> None:
    annotations = {NGINX + "rewrite-target": "/$1", NGINX + "x-forwarded-prefix": "/api"}
    body = ingress("p", [rule("p.example", ("/api/(.*)", IS, "app"))], annotations=annotations)
    rendered = go(body, settings=ON)
    route = router(rendered).lookup("p.example", "/api/x", "GET")
    assert route is not None and route.headers_request == (("X-Forwarded-Prefix", "/api"),)
    # An empty value sets nothing (ingress-nginx's e2e test).
    annotations[NGINX + "x-forwarded-prefix"] = ""
    rendered = go(ingress("p", [rule("p.example", ("/api/(.*)", IS, "app"))],
                          annotations=annotations), settings=ON)  # fmt: skip
    route = router(rendered).lookup("p.example", "/api/x", "GET")
    assert route is not None and route.headers_request == ()
    assert problems(rendered) == []


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"use-regex": "yes"}, "is not true or false"),
        ({"rewrite-target": "/$host/x"}, "only $1..$9"),
        ({"rewrite-target": "${1}"}, "characters ingress-nginx refuses"),
        ({"rewrite-target": "https://other.example/$1"}, "URL target"),
        ({"rewrite-target": "/a b"}, "characters ingress-nginx refuses"),
        ({"x-forwarded-prefix": "/api"}, "has no effect without rewrite-target"),
        ({"x-forwarded-prefix": "/$1", "rewrite-target": "/"}, "not a literal path"),
        ({"server-alias": "~^www\\d+\\.example\\.com$"}, "not a DNS name"),
    ],
)
def test_what_cannot_be_honoured_is_reported(annotations: dict[str, str], message: str) -> None:
    problems_: list[str] = []
    found = {NGINX + k: v for k, v in annotations.items()}
    rewrite = parse_rewrite(lambda name: _find(found, name), problems_)
    assert len(problems_) == 1 and message in problems_[0], problems_
    assert rewrite.target in (None, "/") and rewrite.forwarded_prefix is None


def _find(annotations: dict[str, str], name: str) -> tuple[str, str] | None:
    key = NGINX + name
    return (key, annotations[key]) if key in annotations else None


def test_a_regex_path_that_does_not_compile_is_reported_and_the_rest_served() -> None:
    body = ingress(
        "bad",
        [rule("b.example", ("/ok/(.*)", IS, "app"), ("/broken(", IS, "app"))],
        annotations={NGINX + "use-regex": "true"},
    )
    rendered = go(body, settings=ON)
    [(reason, message)] = problems(rendered)
    assert reason == "InvalidPath" and "'/broken(' does not compile" in message
    assert where(rendered, "b.example", "/ok/x") == (svc("app"), None)


def test_pysozu_keys_work_without_the_flag_and_nginx_keys_need_it() -> None:
    paths = [rule("k.example", ("/v[0-9]", IS, "app"))]
    ours = go(ingress("k", paths, annotations={"pysozu.io/use-regex": "true"}), settings=OFF)
    assert where(ours, "k.example", "/V1") == (svc("app"), None)
    theirs = go(ingress("k", paths, annotations={NGINX + "use-regex": "true"}), settings=OFF)
    assert where(theirs, "k.example", "/V1") is None  # not read: a literal string prefix
    assert [r for r, _ in problems(theirs)] == ["Unsupported"]


def test_the_rendering_is_deterministic_and_the_same_for_every_ingress_order() -> None:
    bodies = [
        ingress("a", [rule("d.example", ("/x(.*)", IS, "a"))],
                annotations={NGINX + "use-regex": "true"}),
        ingress("b", [rule("d.example", ("/xyz/long", "Prefix", "b"), ("/z", "Exact", "c"))],
                created="2026-01-02T00:00:00Z"),
    ]  # fmt: skip
    first = go(*bodies, settings=ON)
    second = go(*reversed(bodies), settings=ON)
    assert first.keys == second.keys
    assert where(first, "d.example", "/xyz/long/1") == (svc("b"), None)  # longer than /x(.*)
    assert where(first, "d.example", "/xyz/lon") == (svc("a"), None)
    assert where(first, "d.example", "/z/1") == (svc("c"), None)  # Exact /z: ~* "^/z"


# -- server-alias -----------------------------------------------------------------------------


def test_an_alias_serves_every_route_of_its_host() -> None:
    aliased = ingress(
        "main",
        [rule("a.example", ("/", "Prefix", "app"))],
        annotations={NGINX + "server-alias": " b.example, *.c.example ,b.example"},
    )
    more = ingress(
        "more", [rule("a.example", ("/more", "Prefix", "more"))], created="2026-01-02T00:00:00Z"
    )
    rendered = go(aliased, more, settings=ON)
    assert problems(rendered) == []
    for host in ("a.example", "b.example", "x.c.example"):
        assert where(rendered, host, "/") == (svc("app"), None)
        assert where(rendered, host, "/more/1") == (svc("more"), None)
    assert where(rendered, "c.example", "/") is None
    assert where(rendered, "y.x.c.example", "/") is None  # one label, as Ingress wildcards


def test_alias_conflicts_are_reported_and_the_host_wins() -> None:
    first = ingress(
        "first",
        [rule("a.example", ("/", "Prefix", "app"))],
        annotations={NGINX + "server-alias": "taken.example,free.example"},
    )
    owner = ingress(
        "owner", [rule("taken.example", ("/", "Prefix", "own"))], created="2026-01-02T00:00:00Z"
    )
    late = ingress(
        "late",
        [rule("a.example", ("/late", "Prefix", "late"))],
        created="2026-01-03T00:00:00Z",
        annotations={NGINX + "server-alias": "late.example"},
    )
    rendered = go(first, owner, late, settings=ON)
    found = problems(rendered)
    assert ("Conflict", "server-alias taken.example: it is a host of Ingress default/owner's "
            "rules, which serve it; not an alias of a.example") in found  # fmt: skip
    assert any(r == "Conflict" and "has the aliases of older Ingress default/first" in m
               for r, m in found)  # fmt: skip
    assert where(rendered, "taken.example", "/") == (svc("own"), None)
    assert where(rendered, "free.example", "/late") == (svc("late"), None)
    assert where(rendered, "late.example", "/") is None


def test_an_alias_gets_the_certificate_of_its_host_only_when_it_covers_the_alias() -> None:
    hosts = TlsHosts({}, lambda *_: None)
    owner = Ingress(ObjectKey("default", "web"), "uid", "", None, {}, None, (), (), ())
    secret = TlsSecret(ObjectKey("default", "tls"), "c", (), "k", "fp", names=("*.bar.com",))
    hosts.hosts["foo.bar.com"] = ("fp", owner)
    hosts.certificates["fp"] = (owner, secret, {"foo.bar.com"})
    hosts.alias("foo.bar.com", "www.bar.com")
    hosts.alias("foo.bar.com", "www.other.com")
    assert hosts.certificates["fp"][2] == {"foo.bar.com", "www.bar.com"}
    assert hosts.secured("www.bar.com") and not hosts.secured("www.other.com")


def test_an_alias_of_a_tls_host_without_a_covering_certificate_is_not_redirected() -> None:
    body = ingress(
        "tls",
        [rule("foo.bar.com", ("/", "Prefix", "app"))],
        tls=[{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}],
        annotations={NGINX + "server-alias": "alias.example"},
    )
    rendered = go(body, settings=ON)
    http = router(rendered, "add_http_frontend")
    host_route = http.lookup("foo.bar.com", "/", "GET")
    alias_route = http.lookup("alias.example", "/", "GET")
    assert host_route is not None and host_route.redirect_status == 308
    assert alias_route is not None and alias_route.redirect_status is None
    names = [r.body.certificate.names for r in rendered.requests if r.verb == "add_certificate"]
    assert names == [["foo.bar.com"]]


def test_the_webhook_judges_regex_paths_as_they_are_rendered() -> None:
    context = Context(settings=ON)
    target = {NGINX + "rewrite-target": "/$1"}
    good = ingress("w", [rule("w.example", ("/foo/?(.*)", IS, "app"))], annotations=target)
    assert judge(good, context).allowed  # `?` is fine in a regex path
    bad = ingress("w", [rule("w.example", ("/a(b", IS, "app"))], annotations=target)
    verdict = judge(bad, context)
    assert not verdict.allowed
    assert "rules[0].http.paths[0]: use-regex path '/a(b' does not compile" in verdict.message
    literal = ingress("w", [rule("w.example", ("/foo/?(.*)", IS, "app"))])
    assert not judge(literal, context).allowed  # not a regex: `?` is no path character
    mistyped = ingress("w", [rule("w.example", ("/", "Prefix", "app"))],
                       annotations={NGINX + "rewrite-target": "/$host"})  # fmt: skip
    assert "only $1..$9" in judge(mistyped, context).message


def test_the_webhook_sees_clashes_of_regex_paths() -> None:
    regex = {NGINX + "use-regex": "true"}
    first = parse_ingress(ingress("first", [rule("c.example", ("/a/?(.*)", IS, "one"))],
                                  annotations=regex))  # fmt: skip
    second = parse_ingress(ingress("second", [rule("c.example", ("/a/?(.*)", IS, "two"))],
                                   created="2026-01-02T00:00:00Z", annotations=regex))  # fmt: skip
    classes = {"pysozu": IngressClass("pysozu", "pysozu.io/ingress-controller", False)}
    index = ClaimIndex(lambda: {first.key: first}, lambda: classes, lambda: 1, ON)
    assert index.conflicts(second) == [
        "route c.example ~* ^/a/?(.*) is already served by Ingress default/first "
        "(backend default/one:80)"
    ]


@pytest.mark.parametrize(
    "path", ["/(a+)+", "/(x*y)*", r"/(\d+)+$", "/(?:[a-z]+/)*", "/(.*)/(.*)/(.*)/x"]
)
def test_nested_and_chained_repeats_are_served_and_cost_linear_time(path: str) -> None:
    """The dataplane matches with RE2 (linear time): patterns that make a backtracking
    engine take exponential or polynomial time on a hostile path are served, and such a path
    is matched (here under the test's timeout) as fast as any other."""
    rule = regex_rule(path)
    assert rule.kind == PathRuleKind.REGEX
    hostile = "/" + "a/" * 4000 + "!"
    compile_regex(rule.value).fullmatch(hostile)
