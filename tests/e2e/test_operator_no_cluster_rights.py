"""`--ingress-class-name` with `--namespace`: the controller serves its class without any
cluster-scoped right. The kmock API server answers 403 to every cluster-scoped path the
controller could use (IngressClasses, and cluster-wide lists of the namespaced kinds); the
controller still serves traffic, writes status and posts Events, and never asked for them."""

from __future__ import annotations

import json

import pytest
from conftest import PUBLISHED, World, wait_for
from objects import endpoint_slice, ingress, service

pytestmark = pytest.mark.timeout(120)

CLUSTER_SCOPED = [
    "/apis/networking.k8s.io/v1/ingressclasses",
    "/apis/networking.k8s.io/v1/ingresses",
    "/api/v1/services",
    "/api/v1/secrets",
    "/api/v1/events",
    "/apis/discovery.k8s.io/v1/endpointslices",
    "/apis/coordination.k8s.io/v1/leases",
]


def test_a_class_named_by_flag_needs_no_cluster_scoped_right(world: World) -> None:
    world.inject(*({"match": path, "answer": 403} for path in CLUSTER_SCOPED))
    world.backend("127.0.0.2", "app-0")
    world.start_operator("--namespace", "default", "--ingress-class-name", "pysozu")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    other = ingress("other", "other.example", "app")
    other["spec"]["ingressClassName"] = "nginx"
    broken = ingress("broken", "broken.example", "app", tls_secret="missing")
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("web", "web.example", "app"),
        other,
        broken,
    )
    wait_for("the route", lambda: world.get("web.example")[0] == 200)
    assert world.get("web.example")[1].startswith("app-0 /")
    assert world.get("other.example")[0] == 404  # another class: not ours
    status = lambda: json.loads(world.kubectl("get", "ingress", "web", "-o", "json"))["status"]  # noqa: E731
    wait_for(
        "the status", lambda: status().get("loadBalancer", {}).get("ingress") == [{"ip": PUBLISHED}]
    )
    events = lambda: json.loads(world.kubectl("get", "events", "-o", "json"))["items"]  # noqa: E731
    wait_for("an Event", lambda: any(e["involvedObject"]["name"] == "broken" for e in events()))
    assert world.health()[0] == 200
    log = world.processes["operator"].log.read_text(errors="replace")
    assert "403" not in log and "Forbidden" not in log and "ingressclasses" not in log, log[-3000:]
