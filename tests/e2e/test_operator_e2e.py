"""The ingress controller end to end: kubectl -> kmock -> pysozu-ingress -> pysozu -> backends."""

from __future__ import annotations

import ast
import json
import time

import pytest
import trustme
from conftest import PUBLISHED, World, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from objects import endpoint_slice, ingress, ingress_class, service, tls_secret

pytestmark = pytest.mark.timeout(120)


def answers(world: World, host: str, path: str = "/", count: int = 1) -> list[tuple[int, str]]:
    results = []
    for _ in range(count):
        status, body, _ = world.get(host, path)
        results.append((status, body.split(" ")[0] if status == 200 else ""))
    return results


def names_seen(world: World, host: str, count: int = 30) -> set[str]:
    return {name for status, name in answers(world, host, count=count) if status == 200}


def status_addresses(world: World, name: str) -> list[dict[str, str]]:
    body = json.loads(world.kubectl("get", "ingress", name, "-o", "json"))
    return body.get("status", {}).get("loadBalancer", {}).get("ingress") or []


def events_for(world: World, name: str) -> list[tuple[str, str]]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        (event["reason"], event["message"])
        for event in items
        if event.get("involvedObject", {}).get("name") == name
    ]


def start(world: World) -> None:
    world.apply(ingress_class())
    world.start_operator()
    wait_for("the operator's first push (/readyz)", world.operator_ready)


def test_an_applied_ingress_routes_traffic_until_deleted(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    start(world)
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("app", "App.Example", "app"),
    )
    assert wait_for("traffic to app", lambda: answers(world, "app.example")[0] == (200, "app-0"))
    assert world.get("app.example", "/deep/path?q=1")[1] == "app-0 /deep/path?q=1"
    assert world.get("other.example")[0] == 404
    # The elected replica publishes our address.
    wait_for("the Ingress status", lambda: status_addresses(world, "app") == [{"ip": PUBLISHED}])
    world.kubectl("delete", "ingress", "app")
    assert wait_for("the route to go", lambda: world.get("app.example")[0] == 404)


def test_scaling_the_endpoint_slice_changes_the_backends(world: World) -> None:
    for i in (2, 3, 4):
        world.backend(f"127.0.0.{i}", f"pod-{i}")
    start(world)
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("app", "app.example", "app"),
    )
    wait_for("one backend", lambda: names_seen(world, "app.example") == {"pod-2"})
    world.apply(endpoint_slice("app", ["127.0.0.2", "127.0.0.3", "127.0.0.4"], world.backend_port))
    wait_for(
        "three backends", lambda: names_seen(world, "app.example") == {"pod-2", "pod-3", "pod-4"}
    )
    # Not ready endpoints receive nothing.
    slice_ = endpoint_slice("app", ["127.0.0.3"], world.backend_port)
    slice_["endpoints"].append({"addresses": ["127.0.0.4"], "conditions": {"ready": False}})
    world.apply(slice_)
    wait_for("one backend again", lambda: names_seen(world, "app.example") == {"pod-3"})
    # After the push that added the route, endpoint changes pushed backend requests only.
    log = world.processes["operator"].log.read_text()
    pushes = [line.split("pushed ")[1] for line in log.splitlines() if "pushed {" in line]
    first_route = next(i for i, push in enumerate(pushes) if "add_cluster" in push)
    later = [ast.literal_eval(push.split(" in ")[0]) for push in pushes[first_route + 1 :]]
    assert len(later) >= 2
    assert all(verb.endswith("_backend") for verbs in later for verb in verbs)


def fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


def test_rotating_the_tls_secret_replaces_the_certificate(world: World) -> None:
    world.backend("127.0.0.2", "secure")
    ca = trustme.CA()
    first, second = ca.issue_cert("secure.example"), ca.issue_cert("secure.example")
    pem_1, pem_2 = first.cert_chain_pems[0].bytes(), second.cert_chain_pems[0].bytes()
    start(world)
    world.apply(
        service("secure"),
        endpoint_slice("secure", ["127.0.0.2"], world.backend_port),
        tls_secret("secure-tls", pem_1, first.private_key_pem.bytes()),
        ingress("secure", "secure.example", "secure", tls_secret="secure-tls"),
    )

    def certificates() -> str:
        done = world.pysozu("certificate", "list")
        assert done.returncode == 0, done.stderr
        return done.stdout

    wait_for("the first certificate", lambda: fingerprint(pem_1) in certificates())
    world.apply(tls_secret("secure-tls", pem_2, second.private_key_pem.bytes()))
    wait_for("the rotated certificate", lambda: fingerprint(pem_2) in certificates())
    assert fingerprint(pem_1) not in certificates()


def test_plain_http_to_a_tls_host_is_redirected_to_https(world: World) -> None:
    world.backend("127.0.0.2", "secure")
    issued = trustme.CA().issue_cert("secure.example")
    start(world)
    world.apply(
        service("secure"),
        endpoint_slice("secure", ["127.0.0.2"], world.backend_port),
        tls_secret("secure-tls", issued.cert_chain_pems[0].bytes(), issued.private_key_pem.bytes()),
        ingress("secure", "secure.example", "secure", tls_secret="secure-tls"),
        ingress("plain", "plain.example", "secure"),
    )
    wait_for("the plain route", lambda: answers(world, "plain.example")[0] == (200, "secure"))
    status, _, headers = world.get("secure.example", "/x")
    assert status == 308
    assert headers["location"].startswith("https://secure.example")


def test_a_restarted_dataplane_gets_its_state_back(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    start(world)
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("app", "app.example", "app"),
    )
    wait_for("traffic", lambda: answers(world, "app.example")[0] == (200, "app-0"))
    world.processes["dataplane"].stop()
    world.start_dataplane()
    restarted = time.monotonic()
    wait_for(
        "traffic after the restart", lambda: answers(world, "app.example")[0] == (200, "app-0")
    )
    assert time.monotonic() - restarted < 10


def test_conflicting_ingresses_the_oldest_wins_and_the_other_gets_an_event(world: World) -> None:
    world.backend("127.0.0.2", "old")
    world.backend("127.0.0.3", "new")
    start(world)
    world.apply(
        service("old-app"),
        endpoint_slice("old-app", ["127.0.0.2"], world.backend_port),
        service("new-app"),
        endpoint_slice("new-app", ["127.0.0.3"], world.backend_port),
        ingress("newer", "shared.example", "new-app", created="2026-06-01T00:00:00Z"),
        ingress("older", "shared.example", "old-app", created="2026-01-01T00:00:00Z"),
    )
    wait_for("the older Ingress's route", lambda: names_seen(world, "shared.example", 5) == {"old"})
    conflicts = wait_for(
        "a Conflict event on the newer Ingress",
        lambda: [e for e in events_for(world, "newer") if e[0] == "Conflict"],
    )
    assert "default/older" in conflicts[0][1]
    assert not [e for e in events_for(world, "older") if e[0] == "Conflict"]
    world.kubectl("delete", "ingress", "older")
    wait_for(
        "the newer Ingress takes over", lambda: names_seen(world, "shared.example", 5) == {"new"}
    )


def test_an_ingress_of_another_class_is_ignored(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    start(world)
    other = ingress("other", "other.example", "app")
    other["spec"]["ingressClassName"] = "nginx"
    world.apply(
        ingress_class("nginx", "k8s.io/ingress-nginx"),
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        other,
        ingress("mine", "mine.example", "app"),
    )
    wait_for("our Ingress", lambda: answers(world, "mine.example")[0] == (200, "app-0"))
    assert world.get("other.example")[0] == 404
    wait_for("our status", lambda: status_addresses(world, "mine") == [{"ip": PUBLISHED}])
    assert status_addresses(world, "other") == []


def test_watching_one_namespace_serves_only_its_ingresses(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--namespace", "team-a")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    documents = []
    for namespace in ("team-a", "team-b"):
        for body in (
            service("app"),
            endpoint_slice("app", ["127.0.0.2"], world.backend_port),
            ingress("app", f"{namespace}.example", "app"),
        ):
            body["metadata"]["namespace"] = namespace
            documents.append(body)
    world.apply(*documents)
    wait_for("team-a's route", lambda: answers(world, "team-a.example")[0] == (200, "app-0"))
    assert world.get("team-b.example")[0] == 404


def test_the_default_backend_answers_any_host_and_path(world: World) -> None:
    world.backend("127.0.0.2", "echo")
    world.backend("127.0.0.3", "api")
    start(world)
    default_only = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"namespace": "default", "name": "default-backend"},
        "spec": {
            "ingressClassName": "pysozu",
            "defaultBackend": {"service": {"name": "echo", "port": {"name": "http"}}},
        },
    }
    world.apply(
        service("echo"),
        endpoint_slice("echo", ["127.0.0.2"], world.backend_port),
        service("api"),
        endpoint_slice("api", ["127.0.0.3"], world.backend_port),
        default_only,
        ingress("api", "api.example", "api", path="/v1"),
    )
    wait_for("the default backend", lambda: answers(world, "anything.example")[0] == (200, "echo"))
    for host, path in (("", "/"), ("other.example", "/a/b?c=d"), ("api.example", "/v2")):
        assert answers(world, host or "127.0.0.1", path)[0] == (200, "echo"), (host, path)
    assert answers(world, "api.example", "/v1/users")[0] == (200, "api")
    wait_for(
        "the status", lambda: status_addresses(world, "default-backend") == [{"ip": PUBLISHED}]
    )


def test_a_terminating_serving_endpoint_gets_no_new_requests_while_another_is_ready(
    world: World,
) -> None:
    world.backend("127.0.0.2", "new")
    world.backend("127.0.0.3", "draining")
    start(world)
    both = endpoint_slice("app", ["127.0.0.2", "127.0.0.3"], world.backend_port)
    both["endpoints"][1]["conditions"] = {"ready": False, "serving": True, "terminating": True}
    world.apply(service("app"), both, ingress("app", "app.example", "app"))
    wait_for("the ready endpoint", lambda: names_seen(world, "app.example", 5) == {"new"})
    assert names_seen(world, "app.example", 20) == {"new"}
    # The ready pod goes away too: the draining one answers rather than a 503 (KEP-1669).
    only = endpoint_slice("app", ["127.0.0.3"], world.backend_port)
    only["endpoints"][0]["conditions"] = {"ready": False, "serving": True, "terminating": True}
    world.apply(only)
    wait_for("the draining endpoint", lambda: names_seen(world, "app.example", 5) == {"draining"})
