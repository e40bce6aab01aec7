"""The routing path: no query; escapes, slashes and dot segments normalised; the rest refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.request_path import normalize_path, route_path, rule_path, with_query

# Each spelling of /admin that nginx's `location = /admin` also takes (checked against nginx on
# 127.0.0.1: same $uri), plus the query forms.
ADMIN_SPELLINGS = [
    "/admin",
    "/admin?x=1",
    "/admin?",
    "/%61dmin",
    "/%61%64%6D%69%6e",
    "/x/../admin",
    "/./admin",
    "//admin",
    "///admin",
    "/x/%2e%2e/admin",
    "/x/%2E./admin",
    "/other/../admin",
    "/a/b/../../admin",
    "/./././admin?y=/../z",
]


@pytest.mark.parametrize("target", ADMIN_SPELLINGS)
def test_every_spelling_of_admin_routes_as_admin(target: str) -> None:
    assert route_path(target) == "/admin"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", "/"),
        ("*", "*"),
        ("/foo?x=1", "/foo"),
        ("/aaa/bbb?x=1&y=/ccc", "/aaa/bbb"),
        ("/admin/", "/admin/"),  # a trailing slash is kept: /admin/ is another resource
        ("/admin/.", "/admin/"),
        ("/admin/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/b/../", "/a/"),
        ("/x/..", "/"),
        ("/.", "/"),
        ("///admin//", "/admin/"),
        ("/.well-known/acme", "/.well-known/acme"),  # not a dot segment
        ("/a/..b/.c", "/a/..b/.c"),
        ("/%2541dmin", "/%2541dmin"),  # decoded once: %25 is `%`, and stays escaped
        ("/admin%3Fx", "/admin%3Fx"),  # an escaped `?` is part of the path
        ("/caf%c3%a9", "/caf%C3%A9"),  # other escapes: uppercase hex (RFC 3986 6.2.2.1)
        ("/%7euser", "/~user"),
        ("/a%20b", "/a%20b"),
        ("/ADMIN", "/ADMIN"),  # paths are case-sensitive
        ("/admin;x", "/admin;x"),
    ],
)
def test_normalised_forms(target: str, expected: str) -> None:
    assert route_path(target) == expected


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/%2Fadmin", "encoded /"),
        ("/a%2fb", "encoded /"),
        ("/x/..%2Fadmin", "encoded /"),
        ("/adm%00in", "encoded NUL"),
        ("/admin#frag", "fragment"),
        ("/admin?x#frag", "fragment"),
        ("/#", "fragment"),
        ("/%zz", "malformed"),
        ("/%4", "malformed"),
        ("/a%", "malformed"),
        ("/..", "above the root"),
        ("/../admin", "above the root"),
        ("/%2e%2e/admin", "above the root"),
        ("/.%2e/admin", "above the root"),
        ("/x/../../admin", "above the root"),
        ("/./..", "above the root"),
    ],
)
def test_what_cannot_be_normalised_is_refused_with_400(target: str, reason: str) -> None:
    with pytest.raises(HttpSyntaxError, match=reason) as raised:
        route_path(target)
    assert raised.value.status == 400


def test_the_fast_path_returns_the_very_target() -> None:
    target = "/api/v1/users/12345"
    assert route_path(target) is target


def test_a_rewritten_path_keeps_the_query() -> None:
    assert with_query("/new", "/old?x=1&y=2") == "/new?x=1&y=2"
    assert with_query("/new?a=b", "/old?x=1") == "/new?a=b&x=1"
    assert with_query("/new", "/old") == "/new"
    assert with_query("/new", "/old?") == "/new"


@pytest.mark.parametrize(
    ("value", "prefix", "expected"),
    [
        ("", True, ""),
        ("/", True, "/"),
        ("/api", True, "/api"),
        ("/api/", True, "/api/"),
        ("/%61pi/", True, "/api/"),
        ("/caf%c3", True, "/caf%C3"),
        ("/api//v1", True, "/api/v1"),
        ("/a/.", True, "/a/."),  # an unfinished last segment: `/a/.well-known` still matches
        ("/a/./b", True, "/a/b"),
        ("/%61dmin", False, "/admin"),
        ("/x/../admin", False, "/admin"),
        ("/admin/", False, "/admin/"),
    ],
)
def test_rule_values_are_normalised_alike(value: str, prefix: bool, expected: str) -> None:
    assert rule_path(value, prefix) == (expected, None)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/search?q=1", "query"),
        ("/a#b", "fragment"),
        ("/a%2Fb", "encoded /"),
        ("/../x", "above the root"),
        ("api", "start with '/'"),
    ],
)
def test_rule_values_that_can_never_match_say_why(value: str, problem: str) -> None:
    for prefix in (True, False):
        kept, reason = rule_path(value, prefix)
        assert kept == value and reason is not None and problem in reason


# Paths built from the pieces that matter: separators, dots, escapes (good and bad), letters.
_PIECES = st.sampled_from(
    [
        *("/", "//", ".", "..", "/.", "/..", "a", "b", "~", "%2e", "%2E", "%61", "%41", "%7e"),
        *("%c3", "%C3", "%25", "%3f", "%2f", "%00", "%", "%g1", "?", "?x=/../", "#", ";", "-"),
    ]
)
TARGETS = st.lists(_PIECES, max_size=12).map(lambda pieces: "/" + "".join(pieces))


def _normalised_or_none(target: str) -> str | None:
    try:
        return route_path(target)
    except HttpSyntaxError:
        return None


@given(TARGETS)
def test_normalising_is_idempotent(target: str) -> None:
    once = _normalised_or_none(target)
    if once is not None:
        assert route_path(once) == once
        assert normalize_path(once) == once


@given(TARGETS)
def test_the_result_never_escapes_the_root(target: str) -> None:
    path = _normalised_or_none(target)
    if path is None:
        return
    assert path.startswith("/")
    segments = path.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "//" not in path and "?" not in path and "#" not in path
    assert "%2F" not in path.upper() and "%00" not in path


@given(TARGETS)
def test_unreserved_escapes_never_survive(target: str) -> None:
    path = _normalised_or_none(target)
    if path is not None:
        for escape in ("%2E", "%61", "%41", "%7E"):
            assert escape not in path.upper()


@given(TARGETS, st.sampled_from(["", "?", "?x=1", "?a=/../b#"]))
def test_the_query_never_takes_part(target: str, query: str) -> None:
    path = target.partition("?")[0]
    assert _normalised_or_none(path + query.partition("#")[0]) == _normalised_or_none(path)


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))
def test_any_visible_target_is_normalised_or_refused_with_400(tail: str) -> None:
    """Every byte the parser lets into a target: a routing path that is stable and under the
    root, or HttpSyntaxError, never another exception."""
    path = _normalised_or_none("/" + tail)
    if path is not None:
        assert path.startswith("/") and route_path(path) == path
        assert ".." not in path.split("/") and "//" not in path
