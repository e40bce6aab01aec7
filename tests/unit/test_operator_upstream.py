"""ingress-nginx's service-upstream and default-backend annotations: where a cluster's backends
come from (the Service's ClusterIP, or a fallback Service while the own has no endpoint)."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_render import WEB, go, ingress

pytestmark = pytest.mark.timeout(20)

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)


def service(name: str, cluster_ip: str = "10.96.0.10", port: int = 80) -> dict[str, Any]:
    spec = {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": port}]}
    return {"kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def endpoints(service_name: str, *ips: str, port: int = 8080) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-abc",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


def backends(rendered: Rendered, cid: str) -> list[str]:
    return sorted(
        str(r.body.address)
        for r in rendered.requests
        if r.verb == "add_backend" and r.body.cluster_id == cid
    )


def test_service_upstream_is_the_cluster_ip() -> None:
    annotations = {NGINX + "service-upstream": "true"}
    web = ingress("web", [_rule("app")], annotations=annotations)
    rendered = go(web, service("app"), endpoints("app", "10.0.0.1", "10.0.0.2"), settings=ON)
    assert backends(rendered, "default/app:80") == ["10.96.0.10:80"]
    assert rendered.problems == []
    plain = go(ingress("web", [_rule("app")]), service("app"), endpoints("app", "10.0.0.1"))
    assert backends(plain, "default/app:80") == ["10.0.0.1:8080"]


def test_service_upstream_of_a_headless_service_uses_its_endpoints() -> None:
    web = ingress("web", [_rule("app")], annotations={NGINX + "service-upstream": "true"})
    rendered = go(web, service("app", "None"), endpoints("app", "10.0.0.1"), settings=ON)
    assert backends(rendered, "default/app:80") == ["10.0.0.1:8080"]
    assert ["has no ClusterIP" in p.message for p in rendered.problems] == [True]


def test_default_backend_serves_while_the_service_has_no_endpoint() -> None:
    web = ingress("web", [_rule("app")], annotations={NGINX + "default-backend": "sorry"})
    objects = (service("app"), service("sorry", port=80), endpoints("sorry", "10.0.9.9", port=81))
    rendered = go(web, *objects, settings=ON)
    assert backends(rendered, "default/app:80") == ["10.0.9.9:81"]
    rendered = go(web, *objects, endpoints("app", "10.0.0.1"), settings=ON)
    assert backends(rendered, "default/app:80") == ["10.0.0.1:8080"]  # its own, once it has one
    missing = ingress("web", [_rule("app")], annotations={NGINX + "default-backend": "nope"})
    rendered = go(missing, service("app"), settings=ON)
    assert backends(rendered, "default/app:80") == []
    assert any("default-backend: service default/nope not found" in p.message
               for p in rendered.problems)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value"), [("service-upstream", "yes"), ("default-backend", "Not_A_Name")]
)
def test_bad_values_are_reported(name: str, value: str) -> None:
    rendered = go(ingress("web", [WEB], annotations={NGINX + name: value}), settings=ON)
    assert [p.reason for p in rendered.problems] == ["InvalidAnnotation"]


def test_two_ingresses_sharing_a_service_must_agree() -> None:
    first = ingress("a", [_rule("app", "a.example")], created="2025-01-01T00:00:00Z")
    second = ingress(
        "b", [_rule("app", "b.example")], annotations={NGINX + "service-upstream": "true"}
    )
    rendered = go(first, second, service("app"), endpoints("app", "10.0.0.1"), settings=ON)
    assert backends(rendered, "default/app:80") == ["10.0.0.1:8080"]  # the older one's
    assert [p.reason for p in rendered.problems] == ["Conflict"]


def _rule(service_name: str, host: str = "web.example") -> dict[str, Any]:
    backend = {"service": {"name": service_name, "port": {"number": 80}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    return {"host": host, "http": {"paths": [path]}}


def _cluster(rendered: Rendered, cid: str = "default/app:80") -> Any:
    [body] = [
        r.body for r in rendered.requests if r.verb == "add_cluster" and r.body.cluster_id == cid
    ]
    return body


def test_upstream_hash_by_is_a_consistent_hash_keyed_on_the_variables() -> None:
    from dataplane.command.messages import LoadBalancingAlgorithms

    annotations = {NGINX + "upstream-hash-by": "$request_uri", NGINX + "load-balance": "ewma"}
    web = ingress("web", [_rule("app")], annotations=annotations)
    rendered = go(web, service("app"), endpoints("app", "10.0.0.1"), settings=ON)
    cluster = _cluster(rendered)
    assert cluster.hash_key == "$request_uri"
    assert cluster.load_balancing == LoadBalancingAlgorithms.MAGLEV  # it overrides load-balance
    assert rendered.problems == []
    hrw = {NGINX + "upstream-hash-by": "$host", "pysozu.io/load-balancing": "hrw"}
    rendered = go(ingress("web", [_rule("app")], annotations=hrw), service("app"), settings=ON)
    assert _cluster(rendered).load_balancing == LoadBalancingAlgorithms.HRW


def test_upstream_hash_by_problems_are_reported() -> None:
    bad = {NGINX + "upstream-hash-by": "$request_body"}
    rendered = go(ingress("web", [_rule("app")], annotations=bad), service("app"), settings=ON)
    assert _cluster(rendered).hash_key is None
    assert any("is not a variable" in p.message for p in rendered.problems)
    subset = {NGINX + "upstream-hash-by": "$uri", NGINX + "upstream-hash-by-subset": "true"}
    rendered = go(ingress("web", [_rule("app")], annotations=subset), service("app"), settings=ON)
    assert _cluster(rendered).hash_key == "$uri"
    assert any("no subsets" in p.message for p in rendered.problems)
