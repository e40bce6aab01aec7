"""A `$host`-relative auth-url (`https://$host/oauth2/auth`) resolved to the route serving that
path on the same host (auth_host_routes.py), or failing closed."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_render import go, ingress, rule, state_of

pytestmark = pytest.mark.timeout(20)

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
HOST = "app.example"
APP = "default/app:80"
PROXY = "default/oauth2-proxy:80"
NOAUTH = "default/web:-noauth"


def protected(url: str = "https://$host/oauth2/auth", *paths: tuple[str, str, str]) -> Any:
    annotations = {
        NGINX + "auth-url": url,
        NGINX + "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
    }
    routes = paths or (("/", "Prefix", "app"),)
    return ingress("web", [rule(HOST, *routes)], annotations=annotations)


def oauth2(*paths: tuple[str, str, str], host: str = HOST, **annotations: str) -> Any:
    found = {NGINX + k.replace("_", "-"): v for k, v in annotations.items()}
    body = ingress("oauth2", [rule(host, *paths)], annotations=found)
    body["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    return body


def auths(rendered: Rendered) -> dict[tuple[str, str], Any]:
    """(cluster, path rule value) -> auth_request, of the frontends."""
    out = {}
    for request in rendered.requests:
        if request.verb.endswith("_frontend"):
            body = request.body
            out[(body.cluster_id, body.path.value)] = body.auth_request
    return out


def refusals(rendered: Rendered) -> list[str]:
    return [p.message for p in rendered.problems if p.reason == NOT_ENFORCED]


def test_the_oauth2_ingress_of_the_same_host_answers_the_sub_request() -> None:
    rendered = go(protected(), oauth2(("/oauth2", "Prefix", "oauth2-proxy")), settings=ON)
    assert refusals(rendered) == []
    found = auths(rendered)
    auth = found[(APP, "/")]
    assert auth.cluster_id == PROXY and auth.path == "/oauth2/auth"
    assert auth.host is None  # the request's own Host, as nginx's $host
    assert auth.signin == "https://$host/oauth2/start?rd=$escaped_request_uri"
    assert found[(PROXY, "/oauth2/")] is None and found[(PROXY, "/oauth2")] is None
    state_of(rendered)  # the dataplane's state takes it


def test_http_host_and_plain_http_forms_resolve_too() -> None:
    rendered = go(protected("http://$http_host/oauth2/auth?x=1"), oauth2(
        ("/oauth2", "Prefix", "oauth2-proxy")), settings=ON)  # fmt: skip
    auth = auths(rendered)[(APP, "/")]
    assert auth.cluster_id == PROXY and auth.path == "/oauth2/auth?x=1"


def test_exact_beats_a_longer_prefix_and_the_longest_prefix_wins() -> None:
    routes = oauth2(
        ("/oauth2/auth", "Exact", "exact-auth"),
        ("/oauth2", "Prefix", "oauth2-proxy"),
        ("/oauth2/aut", "Prefix", "other"),
    )
    assert auths(go(protected(), routes, settings=ON))[(APP, "/")].cluster_id == (
        "default/exact-auth:80"
    )
    longest = oauth2(("/oauth2", "Prefix", "oauth2-proxy"), ("/oauth2/auth", "Prefix", "deeper"))
    assert auths(go(protected(), longest, settings=ON))[(APP, "/")].cluster_id == (
        "default/deeper:80"
    )
    # A Prefix path matches whole segments: /oauth2/authx is not under /oauth2/auth
    near = oauth2(("/oauth2/authx", "Prefix", "near"), ("/oauth2", "Prefix", "oauth2-proxy"))
    rendered = go(protected("https://$host/oauth2/auth"), near, settings=ON)
    assert auths(rendered)[(APP, "/")].cluster_id == PROXY


def test_each_route_of_the_protected_ingress_resolves_against_its_own_host() -> None:
    body = protected()
    body["spec"]["rules"].append(rule("other.example", ("/", "Prefix", "app")))
    other = oauth2(("/oauth2", "Prefix", "other-proxy"), host="other.example")
    other["metadata"]["name"] = "oauth2-other"
    rendered = go(body, oauth2(("/oauth2", "Prefix", "oauth2-proxy")), other, settings=ON)
    hosts = {}
    for request in rendered.requests:
        if request.verb == "add_http_frontend" and request.body.cluster_id == APP:
            hosts[request.body.hostname] = request.body.auth_request.cluster_id
    assert hosts == {HOST: PROXY, "other.example": "default/other-proxy:80"}


def test_a_missing_route_fails_closed() -> None:
    body = protected("https://$host/oauth2/auth", ("/app", "Prefix", "app"))
    rendered = go(body, oauth2(("/login", "Prefix", "oauth2-proxy")), settings=ON)
    [message] = refusals(rendered)
    assert "no route serves app.example/oauth2/auth" in message
    auth = auths(rendered)[(APP, "/app")]
    assert auth.cluster_id == NOAUTH  # a cluster without backend: the dataplane answers 500
    clusters = [r.body.cluster_id for r in rendered.requests if r.verb == "add_cluster"]
    backends = [r.body.cluster_id for r in rendered.requests if r.verb == "add_backend"]
    assert NOAUTH in clusters and NOAUTH not in backends
    state_of(rendered)


def test_the_protected_route_itself_fails_closed() -> None:
    rendered = go(protected(), settings=ON)  # only `/` on that host: the app's own route
    [message] = refusals(rendered)
    assert "the protected route itself (a loop)" in message
    assert auths(rendered)[(APP, "/")].cluster_id == NOAUTH


@pytest.mark.parametrize(
    ("annotations", "said"),
    [
        ({"auth_url": "http://oauth2-proxy/x"}, "has its own auth-url"),
        ({"whitelist_source_range": "10.0.0.0/8"}, "has access restrictions"),
        ({"permanent_redirect": "https://elsewhere.example/"}, "redirects"),
        ({"rewrite_target": "/"}, "rewrites its path"),
        ({"upstream_vhost": "proxy.internal"}, "sets its own upstream Host"),
        ({"auth_snippet": "return 200;"}, "fails closed"),
    ],
)
def test_a_route_pysozu_cannot_reproduce_exactly_fails_closed(
    annotations: dict[str, str], said: str
) -> None:
    target = oauth2(("/oauth2", "Prefix", "oauth2-proxy"), **annotations)
    rendered = go(protected(), target, settings=ON)
    assert any(said in message for message in refusals(rendered)), refusals(rendered)
    found = {auth.cluster_id for (cid, _), auth in auths(rendered).items() if cid == APP}
    assert found == {NOAUTH}  # (a rewrite makes the host's paths regexes: `/` too)


def test_a_hostless_rule_fails_closed() -> None:
    body = protected()
    body["spec"]["rules"] = [rule(None, ("/", "Prefix", "app"), ("/oauth2", "Prefix", "px"))]
    rendered = go(body, settings=ON)
    assert any("no fixed host" in message for message in refusals(rendered))
    assert {a.cluster_id for a in auths(rendered).values() if a is not None} == {NOAUTH}
