"""ingress-nginx's external authentication (auth-url and friends) -> each route's auth_request,
pointing at a cluster of the named in-cluster Service; what cannot be served fails closed."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.access_annotations import lookup
from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.auth_request_annotations import AuthUrl, parse_auth_url
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_render import WEB, ep, go, ingress, service, state_of

pytestmark = pytest.mark.timeout(20)

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
SERVED = "default/echo-service:80"
REFUSED = "default/web:-refused"


def auth_slice(namespace: str = "default") -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": "oauth2"}
    return {
        "kind": "EndpointSlice",
        "metadata": {"namespace": namespace, "name": "oauth2-1", "labels": labels},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 4180}],
        "endpoints": [ep("10.0.9.1")],
    }


def auth_service(namespace: str = "default") -> dict[str, Any]:
    body = service("oauth2", [{"name": "http", "port": 80}])
    body["metadata"]["namespace"] = namespace
    return body


def fronts(rendered: Rendered) -> list[Any]:
    return [r.body for r in rendered.requests if r.verb.endswith("_frontend")]


def backends_of(rendered: Rendered, cid: str) -> list[Any]:
    adds = [r.body for r in rendered.requests if r.verb == "add_backend"]
    return [body for body in adds if body.cluster_id == cid]


def parse(**annotations: str) -> Any:
    found = {NGINX + k.replace("_", "-"): v for k, v in annotations.items()}
    return parse_auth_url(lookup(found, True))


def test_auth_url_guards_every_route_with_a_cluster_of_the_service() -> None:
    annotations = {
        NGINX + "auth-url": "http://oauth2.auth.svc.cluster.local/oauth2/auth?allowed=a",
        NGINX + "auth-signin": "https://login.example/oauth2/start?rd=$escaped_request_uri",
        NGINX + "auth-response-headers": "X-Auth-Request-User, X-Auth-Request-Email",
        NGINX + "auth-method": "post",
    }
    body = ingress("web", [WEB], annotations=annotations)
    rendered = go(body, auth_service("auth"), auth_slice("auth"), settings=ON)
    assert rendered.problems == []
    policies = {front.cluster_id: front.auth_request for front in fronts(rendered)}
    auth = policies[SERVED]
    assert auth is not None and auth.cluster_id == "auth/oauth2:80"
    assert auth.path == "/oauth2/auth?allowed=a" and auth.method == "POST"
    assert auth.response_headers == ["X-Auth-Request-User", "X-Auth-Request-Email"]
    assert auth.signin == "https://login.example/oauth2/start?rd=$escaped_request_uri"
    assert auth.host == "oauth2.auth.svc.cluster.local"
    backends = [
        r.body
        for r in rendered.requests
        if r.verb == "add_backend" and r.body.cluster_id == auth.cluster_id
    ]
    assert [str(b.address) for b in backends] == ["10.0.9.1:4180"]
    state_of(rendered)  # the dataplane's state takes it


def test_without_nginx_annotations_the_pysozu_names_still_work_and_nginx_ones_fail_closed() -> None:
    body = ingress("web", [WEB], annotations={"pysozu.io/auth-url": "http://oauth2/check"})
    rendered = go(body, auth_service(), auth_slice())
    [front] = {f.auth_request.cluster_id for f in fronts(rendered)}
    assert front == "default/oauth2:80"
    body = ingress("web", [WEB], annotations={NGINX + "auth-url": "http://oauth2/check"})
    rendered = go(body, auth_service(), auth_slice())
    assert {f.cluster_id for f in fronts(rendered)} == {REFUSED}


@pytest.mark.parametrize(
    ("annotations", "said"),
    [
        ({"auth_url": "https://oauth2.auth.svc/x"}, "https auth services are not served"),
        ({"auth_url": "https://$host:8443/oauth2/auth"}, "uses nginx variables"),
        ({"auth_url": "https://$host/auth?u=$request_uri"}, "uses nginx variables"),
        ({"auth_url": "http://auth.example.com/check"}, "not an in-cluster Service"),
        ({"auth_url": "ftp://oauth2/x"}, "not an http:// URL"),
        ({"auth_url": "http://oauth2/x", "auth_method": "GE T"}, "not an HTTP method"),
        ({"auth_url": "http://oauth2/x", "auth_response_headers": "X Bad"}, "not a header"),
        ({"auth_signin": "https://login/"}, "has no effect without auth-url"),
        ({"auth_keepalive": "10"}, "has no effect without auth-url"),
        ({"auth_url": "http://oauth2/x", "auth_cache_key": "$cookie"}, "not enforced"),
        ({"auth_url": "http://oauth2/x", "auth_snippet": "return 200;"}, "not enforced"),
        ({"auth_url": "http://oauth2/x", "auth_always_set_cookie": "true"}, "not enforced"),
    ],
)
def test_what_cannot_be_served_fails_closed(annotations: dict[str, str], said: str) -> None:
    found = {NGINX + k.replace("_", "-"): v for k, v in annotations.items()}
    rendered = go(ingress("web", [WEB], annotations=found), auth_service(), settings=ON)
    assert {f.cluster_id for f in fronts(rendered)} == {REFUSED}
    assert all(f.auth_request is None for f in fronts(rendered))
    messages = [p.message for p in rendered.problems if p.reason == NOT_ENFORCED]
    assert any(said in message for message in messages), messages


def test_keepalive_settings_are_reported_not_refused() -> None:
    result = parse(auth_url="http://oauth2.auth:8080/a", auth_keepalive="10")
    assert result.refused == []
    assert result.auth == AuthUrl("oauth2", "auth", 8080, "/a", "oauth2.auth:8080")
    [notice] = result.notices
    assert notice.type == "Normal" and "auth-keepalive" in notice.message


@pytest.mark.parametrize(
    ("url", "service", "namespace"),
    [
        ("http://oauth2", "oauth2", None),
        ("http://oauth2.auth", "oauth2", "auth"),
        ("http://oauth2.auth.svc", "oauth2", "auth"),
        ("http://oauth2.auth.svc.cluster.local:4180/x", "oauth2", "auth"),
    ],
)
def test_service_host_forms(url: str, service: str, namespace: str | None) -> None:
    auth = parse(auth_url=url).auth
    assert (auth.service, auth.namespace) == (service, namespace)


def test_a_missing_auth_service_is_reported_and_its_cluster_has_no_backend() -> None:
    body = ingress("web", [WEB], annotations={NGINX + "auth-url": "http://nothing/check"})
    rendered = go(body, settings=ON)
    assert "ServiceNotFound" in [p.reason for p in rendered.problems]
    [cid] = {f.auth_request.cluster_id for f in fronts(rendered)}
    assert cid == "default/nothing:80"
    assert not [
        r for r in rendered.requests if r.verb == "add_backend" and r.body.cluster_id == cid
    ]
