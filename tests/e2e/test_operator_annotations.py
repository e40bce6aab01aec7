"""Annotations pysozu cannot honour, end to end: an access restriction makes the Ingress's
routes answer 503 through the real proxy (the backend never sees a request), with a Warning
Event naming it and an error in the Ingress's status; raw nginx config and nginx internals
are served with an Event saying what was ignored."""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
from typing import Any
from unittest.mock import ANY

import pytest
import trustme
from conftest import PUBLISHED, World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service, tls_secret

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"
REFUSED_ERROR = "pysozu.io/AnnotationNotEnforced"


def events_for(world: World, name: str) -> list[tuple[str, str, str]]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        (event["type"], event["reason"], event["message"])
        for event in items
        if event.get("involvedObject", {}).get("name") == name
    ]


def status_of(world: World, name: str) -> list[dict[str, object]]:
    body = json.loads(world.kubectl("get", "ingress", name, "-o", "json"))
    return body.get("status", {}).get("loadBalancer", {}).get("ingress") or []


def refused_status(ports: tuple[int, int]) -> list[dict[str, object]]:
    entries = [{"port": port, "protocol": "TCP", "error": REFUSED_ERROR} for port in ports]
    return [{"ip": PUBLISHED, "ports": entries}]


def start(world: World, *flags: str) -> None:
    world.apply(ingress_class())
    world.start_operator(*flags)
    wait_for("the operator's first push (/readyz)", world.operator_ready)


@pytest.mark.parametrize("flags", [(), ("--nginx-annotations",)], ids=["nginx-off", "nginx-on"])
def test_a_global_rate_limit_fails_closed_until_it_is_removed(
    world: World, flags: tuple[str]
) -> None:
    app = world.backend("127.0.0.2", "app-0")
    start(world, *flags)
    key = NGINX + "global-rate-limit"  # not enforced: no rate limit shared across pods
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("open", "open.example", "app"),
        ingress("closed", "closed.example", "app", annotations={key: "10"}),
    )
    wait_for("the open route", lambda: world.get("open.example")[0] == 200)
    hits = app.hits
    for _ in range(5):
        assert world.get("closed.example")[0] == 503
        assert world.get("closed.example", "/deep/path")[0] == 503
    assert app.hits == hits  # not one request reached the backend
    warnings = wait_for(
        "a Warning naming the annotation",
        lambda: [e for e in events_for(world, "closed") if e[1] == "AnnotationNotEnforced"],
    )
    assert warnings[0][0] == "Warning" and key in warnings[0][2]
    assert ("--nginx-annotations is off" in warnings[0][2]) == (not flags)
    ports = (world.http_port, world.https_port)
    wait_for("the status error", lambda: status_of(world, "closed") == refused_status(ports))
    assert status_of(world, "open") == [{"ip": PUBLISHED}]
    # The restriction removed: served, and the status says nothing more.
    world.kubectl("annotate", "ingress", "closed", f"{key}-")
    wait_for("the route served", lambda: world.get("closed.example")[1] == "app-0 /")
    wait_for("the status cleared", lambda: status_of(world, "closed") == [{"ip": PUBLISHED}])


def test_auth_annotations_fail_closed_and_the_rest_is_served_with_events(world: World) -> None:
    app = world.backend("127.0.0.2", "app-0")
    start(world, "--nginx-annotations")
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress(
            "auth",
            "auth.example",
            "app",
            # digest auth is not served; a missing Secret for basic auth is not enforceable
            annotations={NGINX + "auth-type": "digest", NGINX + "auth-secret": "htpasswd"},
        ),
        ingress(
            "tuned",
            "tuned.example",
            "app",
            annotations={
                NGINX + "configuration-snippet": "deny all;",
                NGINX + "proxy-buffering": "off",
                NGINX + "mirror-target": "http://mirror.example/",
            },
        ),
    )
    wait_for("the tuned route", lambda: world.get("tuned.example")[1] == "app-0 /")
    hits = app.hits
    assert world.get("auth.example")[0] == 503
    assert app.hits == hits
    not_enforced = wait_for(
        "a not-enforced Warning",
        lambda: [
            m
            for t, r, m in events_for(world, "auth")
            if (t, r) == ("Warning", "AnnotationNotEnforced")
        ],
    )
    assert NGINX + "auth-type" in not_enforced[0] and "digest" in not_enforced[0]
    missing = ingress(
        "missing",
        "missing.example",
        "app",
        annotations={NGINX + "auth-type": "basic", NGINX + "auth-secret": "nope"},
    )
    world.apply(missing)
    warnings = wait_for(
        "the missing Secret's Warning",
        lambda: [m for t, r, m in events_for(world, "missing") if r == "AnnotationNotEnforced"],
    )
    assert "Secret default/nope not found" in warnings[0]
    assert world.get("missing.example")[0] == 503
    seen = wait_for("three Events on tuned", lambda: len(events_for(world, "tuned")) >= 3)
    assert seen
    kinds = {(t, r) for t, r, _ in events_for(world, "tuned")}
    assert kinds == {
        ("Warning", "SnippetIgnored"),
        ("Normal", "NoMeaningHere"),
        ("Warning", "Unsupported"),
    }


def get_with(world: World, host: str, authorization: str | None) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=5)
    headers = {"Host": host}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, body, response.getheader("WWW-Authenticate") or ""
    finally:
        connection.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_pysozu_basic_auth_is_enforced_by_the_proxy(world: World) -> None:
    app = world.backend("127.0.0.2", "app-0")
    start(world)
    digest = hashlib.sha256(b"correct horse").hexdigest()
    annotations = {
        "pysozu.io/authorized-hashes": f"alice:{digest}",
        "pysozu.io/www-authenticate": "staff",
    }
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("guarded", "guarded.example", "app", annotations=annotations),
    )
    wait_for(
        "the guarded route",
        lambda: (
            get_with(world, "guarded.example", basic("alice", "correct horse"))[:2]
            == (200, "app-0 /")
        ),
    )
    hits = app.hits
    assert get_with(world, "guarded.example", None) == (401, ANY, 'Basic realm="staff"')
    assert get_with(world, "guarded.example", basic("alice", "wrong"))[0] == 401
    assert get_with(world, "guarded.example", basic("mallory", "correct horse"))[0] == 401
    assert app.hits == hits
    assert not [e for e in events_for(world, "guarded") if e[0] == "Warning"]


def test_nginx_redirect_annotations_answer_through_the_proxy(world: World) -> None:
    app = world.backend("127.0.0.2", "app-0")
    start(world, "--nginx-annotations")
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("plain", "plain.example", "app"),
        ingress(
            "moved",
            "moved.example",
            "app",
            annotations={
                NGINX + "permanent-redirect": "https://new.example/home",
                NGINX + "permanent-redirect-code": "308",
            },
        ),
        ingress(
            "away",
            "away.example",
            "app",
            annotations={NGINX + "temporal-redirect": "http://elsewhere.example/"},
        ),
    )
    wait_for("the plain route", lambda: world.get("plain.example")[0] == 200)
    wait_for("the redirect", lambda: world.get("moved.example", "/a?b=c")[0] == 308)
    hits = app.hits
    status, _, headers = world.get("moved.example", "/deep/path?q=1")
    assert (status, headers["location"]) == (308, "https://new.example/home")
    status, _, headers = world.get("away.example", "/x")
    assert (status, headers["location"]) == (302, "http://elsewhere.example/")
    assert app.hits == hits
    assert not [e for e in events_for(world, "moved") if e[0] == "Warning"]


def test_nginx_upstream_vhost_is_the_host_the_backend_gets(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    start(world, "--nginx-annotations")
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("plain", "plain.example", "app"),
        ingress(
            "vhost", "vhost.example", "app", annotations={NGINX + "upstream-vhost": "app.internal"}
        ),
    )
    wait_for("the plain route", lambda: world.get("plain.example")[0] == 200)
    _, body, headers = wait_for(
        "the vhost route",
        lambda: (answer := world.get("vhost.example", "/p?q=1"))[0] == 200 and answer,
    )
    assert body == "app-0 /p?q=1"
    assert headers["x-seen-host"] == "app.internal"
    assert headers["x-seen-forwarded-host"] == "vhost.example"
    assert world.get("plain.example")[2]["x-seen-host"] == "plain.example"


def cluster_config(world: World, cluster_id: str) -> dict[str, Any]:
    answer = world.pysozu_json("cluster", "list", "--id", cluster_id)
    text = json.dumps(answer)
    assert cluster_id in text, text
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("cluster_id") == cluster_id and "load_balancing" in value:
                found.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(answer)
    assert found, text
    return found[0]


def test_nginx_load_balance_picks_the_dataplane_policy(world: World) -> None:
    world.backend("127.0.0.2", "pod-2")
    world.backend("127.0.0.3", "pod-3")
    start(world, "--nginx-annotations")
    world.apply(
        service("rr"),
        endpoint_slice("rr", ["127.0.0.2", "127.0.0.3"], world.backend_port),
        service("ewma"),
        endpoint_slice("ewma", ["127.0.0.2", "127.0.0.3"], world.backend_port),
        ingress("rr", "rr.example", "rr", annotations={NGINX + "load-balance": "round_robin"}),
        ingress("ewma", "ewma.example", "ewma", annotations={NGINX + "load-balance": "ewma"}),
    )
    for host in ("rr.example", "ewma.example"):
        wait_for(f"traffic to {host}", lambda host=host: world.get(host)[0] == 200)
    names = [world.get("rr.example")[1].split(" ")[0] for _ in range(6)]
    assert sorted(set(names)) == ["pod-2", "pod-3"]
    assert all(a != b for a, b in itertools.pairwise(names)), names  # alternating
    rr = cluster_config(world, "default/rr:http")
    ewma = cluster_config(world, "default/ewma:http")
    assert rr["load_balancing"] == "ROUND_ROBIN", rr
    assert (ewma["load_balancing"], ewma["load_metric"]) == ("LEAST_LOADED", "CONNECTION_TIME")
    seen = {world.get("ewma.example")[1].split(" ")[0] for _ in range(20)}
    assert seen <= {"pod-2", "pod-3"} and seen


def test_nginx_ssl_redirect_annotations(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    issued = trustme.CA().issue_cert("secure.example")
    start(world, "--nginx-annotations")
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        tls_secret("secure-tls", issued.cert_chain_pems[0].bytes(), issued.private_key_pem.bytes()),
        ingress("tls-default", "secure.example", "app", tls_secret="secure-tls"),
        ingress(
            "tls-off",
            "secure.example",
            "app",
            path="/open",
            tls_secret="secure-tls",
            annotations={NGINX + "ssl-redirect": "false"},
        ),
        ingress(
            "forced", "forced.example", "app", annotations={NGINX + "force-ssl-redirect": "true"}
        ),
    )
    wait_for("the plain route", lambda: world.get("secure.example", "/open")[0] == 200)
    status, _, headers = world.get("secure.example", "/x?y=1")
    # No port: ingress-nginx's redirects name none either (the HTTPS port is 443 in front).
    assert (status, headers["location"]) == (308, "https://secure.example/x?y=1")
    status, _, headers = world.get("forced.example", "/a")
    assert status == 308 and headers["location"].startswith("https://forced.example")


def test_nginx_app_root_redirects_slash_only(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    start(world, "--nginx-annotations")
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("rooted", "rooted.example", "app", annotations={NGINX + "app-root": "/app1"}),
    )
    wait_for("the app-root redirect", lambda: world.get("rooted.example", "/")[0] == 302)
    status, _, headers = world.get("rooted.example", "/?q=1")
    assert (status, headers["location"]) == (302, "http://rooted.example/app1")
    # the endpoints may reach the dataplane a push after the route (503 meanwhile, as nginx)
    wait_for("the app", lambda: world.get("rooted.example", "/app1")[1] == "app-0 /app1")
    assert world.get("rooted.example", "/other?x=y")[1] == "app-0 /other?x=y"
