"""--publish-service: Ingress status follows the publish Service's address, watched on its own
(here in a namespace the controller does not watch for Ingresses); a pending LoadBalancer
publishes nothing (never its cluster IP)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)


def status_of(world: World, name: str) -> list[dict[str, Any]]:
    body = json.loads(world.kubectl("get", "ingress", name, "-o", "json"))
    found: list[dict[str, Any]] = body.get("status", {}).get("loadBalancer", {}).get("ingress")
    return found or []


def load_balancer() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "edge", "name": "lb"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.7.7",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def set_load_balancer(world: World, *entries: dict[str, str]) -> None:
    patch = json.dumps({"status": {"loadBalancer": {"ingress": list(entries)}}})
    world.kubectl(
        "patch", "service", "lb", "-n", "edge", "--subresource=status", "--type=merge", "-p", patch
    )


def test_ingress_status_follows_the_publish_service(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    decoy = {**service("decoy"), "metadata": {"namespace": "edge", "name": "decoy"}}
    decoy["spec"]["externalIPs"] = ["198.51.100.99"]  # same namespace, another name: not ours
    world.apply(
        ingress_class(),
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("app", "app.example", "app"),
        load_balancer(),
        decoy,
    )
    world.start_operator(
        "--namespace", "default", "--publish-service", "edge/lb", publish_address=None
    )
    wait_for("the first push", world.operator_ready)
    log = world.processes["operator"].log
    wait_for("the pending LoadBalancer seen", lambda: "has no address" in log.read_text())
    time.sleep(2)  # the leader has had time to write, were there anything to write
    assert status_of(world, "app") == []  # pending: not the cluster IP, not the decoy
    set_load_balancer(world, {"ip": "203.0.113.7"})
    wait_for("the LB address", lambda: status_of(world, "app") == [{"ip": "203.0.113.7"}], 15)
    set_load_balancer(world, {"hostname": "lb.example.net"}, {"ip": "203.0.113.8"})
    wait_for(
        "the new LB addresses",
        lambda: status_of(world, "app") == [{"hostname": "lb.example.net"}, {"ip": "203.0.113.8"}],
        15,
    )
    assert world.health() == (200, "ok\n")
