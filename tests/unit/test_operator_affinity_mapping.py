"""ingress-nginx's cookie affinity attributes -> the cluster's sticky_cookie (operator side)."""

from __future__ import annotations

import pytest
from ingress_operator.annotations import parse_annotations

from dataplane.command.messages import StickyCookie

pytestmark = pytest.mark.timeout(10)

NGINX = "nginx.ingress.kubernetes.io/"


def parse(nginx: bool = True, **names: str) -> tuple[StickyCookie | None, str | None, list[str]]:
    annotations = {NGINX + "affinity": "cookie"} if nginx else {}
    annotations |= {
        (k if k.startswith("pysozu.io/") else NGINX + k.replace("_", "-")): v
        for k, v in names.items()
    }
    options = parse_annotations(annotations, nginx=nginx)
    cluster = options.cluster("c")
    return cluster.sticky_cookie, cluster.sticky_name, options.problems


def test_affinity_alone_gets_ingress_nginx_defaults() -> None:
    cookie, name, problems = parse()
    assert cookie == StickyCookie(http_only=True, secure="https")
    assert (name, problems) == ("INGRESSCOOKIE", [])


def test_every_attribute() -> None:
    cookie, name, problems = parse(
        session_cookie_path="/app",
        session_cookie_domain="example.com",
        session_cookie_max_age="3600",
        session_cookie_expires="7200",
        session_cookie_samesite="strict",
        session_cookie_secure="true",
        session_cookie_name="route",
    )
    assert cookie == StickyCookie(
        path="/app",
        domain="example.com",
        max_age=3600,
        expires=7200,
        same_site="Strict",
        secure="always",
        http_only=True,
    )
    assert (name, problems) == ("route", [])
    assert parse(session_cookie_secure="false")[0] == StickyCookie(http_only=True)


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("session-cookie-path", "app", "is not a path"),
        ("session-cookie-path", "/a;b", "is not a path"),
        ("session-cookie-max-age", "-1", "is not a number of seconds"),
        ("session-cookie-expires", "soon", "is not a number of seconds"),
        ("session-cookie-samesite", "sometimes", "is not None, Lax or Strict"),
        ("session-cookie-secure", "yes", "is not true or false"),
        ("session-cookie-change-on-failure", "false", 'served as "true"'),
        ("session-cookie-conditional-samesite-none", "true", "SameSite=None is sent to every"),
        ("affinity-mode", "balanced", 'served as "persistent"'),
        ("affinity-mode", "sometimes", "is not balanced or persistent"),
    ],
)
def test_what_cannot_be_served_as_asked_is_reported(name: str, value: str, said: str) -> None:
    cookie, _, problems = parse(**{name.replace("-", "_"): value})
    assert cookie is not None  # the rest still applies
    assert len(problems) == 1 and NGINX + name in problems[0] and said in problems[0]


def test_accepted_values_say_nothing() -> None:
    for name, value in (
        ("affinity-mode", "persistent"),
        ("session-cookie-change-on-failure", "true"),
        ("session-cookie-conditional-samesite-none", "false"),
    ):
        assert parse(**{name.replace("-", "_"): value})[2] == []


def test_attributes_without_sticky_sessions_have_no_effect_and_are_reported() -> None:
    options = parse_annotations({NGINX + "session-cookie-max-age": "60"}, nginx=True)
    assert options.cluster("c").sticky_cookie is None
    assert options.problems == [
        f"annotation {NGINX}session-cookie-max-age: has no effect without sticky sessions"
    ]


def test_pysozu_names_win_and_work_without_the_nginx_flag() -> None:
    annotations = {
        "pysozu.io/sticky-sessions": "true",
        "pysozu.io/session-cookie-max-age": "5",
        NGINX + "session-cookie-max-age": "9",
    }
    options = parse_annotations(annotations, nginx=True)
    cookie = options.cluster("c").sticky_cookie
    assert cookie is not None and cookie.max_age == 5
    plain = parse_annotations({k: v for k, v in annotations.items() if "nginx" not in k}, False)
    assert plain.cluster("c").sticky_cookie == StickyCookie(
        max_age=5, http_only=True, secure="https"
    )
    # pysozu.io/sticky-sessions alone keeps sozu's cookie (Path=/ only, the listener's name).
    sozu = parse_annotations({"pysozu.io/sticky-sessions": "true"}, nginx=False)
    assert (sozu.cluster("c").sticky_cookie, sozu.cluster("c").sticky_name) == (None, None)
