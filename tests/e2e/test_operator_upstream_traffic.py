"""ingress-nginx's service-upstream and default-backend end to end: the real operator points
the cluster at the Service's ClusterIP, or at a fallback Service while the route's own has no
endpoint, and the real proxy sends the requests there."""

from __future__ import annotations

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


def start(world: World) -> None:
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)


def test_service_upstream_sends_to_the_cluster_ip(world: World) -> None:
    world.backend("127.0.0.2", "pod-0")
    world.backend("127.0.0.3", "cluster-ip")  # stands for kube-proxy's virtual address
    start(world)
    app = service("app", port=world.backend_port)
    app["spec"]["clusterIP"] = "127.0.0.3"
    annotations = {NGINX + "service-upstream": "true"}
    world.apply(
        app,
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("web", "web.example", "app", annotations=annotations),
    )
    wait_for("the ClusterIP route", lambda: world.get("web.example")[1] == "cluster-ip /")
    assert all(world.get("web.example")[1] == "cluster-ip /" for _ in range(4))


def test_default_backend_serves_while_the_service_has_no_endpoint(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    world.backend("127.0.0.4", "sorry-0")
    start(world)
    world.apply(
        service("app"),
        service("sorry"),
        endpoint_slice("sorry", ["127.0.0.4"], world.backend_port),
        ingress("web", "web.example", "app", annotations={NGINX + "default-backend": "sorry"}),
    )
    wait_for("the fallback Service", lambda: world.get("web.example")[1] == "sorry-0 /")
    world.apply(endpoint_slice("app", ["127.0.0.2"], world.backend_port))
    wait_for("the Service's own endpoint", lambda: world.get("web.example")[1] == "app-0 /")


def test_upstream_hash_by_keeps_a_key_on_one_backend(world: World) -> None:
    for n in range(3):
        world.backend(f"127.0.0.{n + 2}", f"pod-{n}")
    start(world)
    annotations = {NGINX + "upstream-hash-by": "$arg_user"}
    ips = [f"127.0.0.{n + 2}" for n in range(3)]
    world.apply(
        service("app"),
        endpoint_slice("app", ips, world.backend_port),
        ingress("web", "web.example", "app", annotations=annotations),
    )
    wait_for("the route", lambda: world.get("web.example", "/?user=0")[0] == 200)
    owners = {}
    for user in range(10):
        answers = {world.get("web.example", f"/?user={user}&n={n}")[1].split()[0] for n in range(4)}
        assert len(answers) == 1, answers  # one backend per key
        owners[user] = answers.pop()
    assert len(set(owners.values())) >= 2  # keys spread over the pods
