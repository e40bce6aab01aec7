"""The controller's loops against a failing API server (kmock with injected faults): refused
connections, 500s and calls that never answer. The Lease, status and Event loops survive them,
work again once the API server does, and /healthz stays truthful (200: nothing is dead)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import PUBLISHED, World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(150)

LEASE = "pysozu-ingress-leader"


def lease_holder(world: World, name: str = LEASE) -> str | None:
    done = world.kubectl("get", "leases", "-o", "json")
    for item in json.loads(done)["items"]:
        if item["metadata"]["name"] == name:
            holder: str | None = item.get("spec", {}).get("holderIdentity")
            return holder
    return None


def status_of(world: World, name: str) -> list[dict[str, str]]:
    body = json.loads(world.kubectl("get", "ingress", name, "-o", "json"))
    return body.get("status", {}).get("loadBalancer", {}).get("ingress") or []


def reasons(world: World, name: str) -> set[str]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return {e["reason"] for e in items if e.get("involvedObject", {}).get("name") == name}


def healthy_for(world: World, seconds: float) -> None:
    """/healthz answers 200 all along (polled), and the operator is still running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert world.health() == (200, "ok\n")
        assert world.processes["operator"].popen.poll() is None
        time.sleep(0.2)


def operator_log(world: World) -> str:
    return world.processes["operator"].log.read_text(errors="replace")


def start(world: World, *objects: dict[str, object]) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(
        ingress_class(),
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        *objects,
    )
    world.start_operator("--api-timeout", "2")
    wait_for("the first push", world.operator_ready)


def test_the_loops_outlive_a_refusing_api_server_and_resume_when_it_is_back(world: World) -> None:
    start(world, ingress("app", "app.example", "app"))
    wait_for("the Lease", lambda: lease_holder(world))
    wait_for("the status", lambda: status_of(world, "app") == [{"ip": PUBLISHED}])
    port = world.api_port
    world.processes.pop("kmock").stop()
    # Connection refused: urllib3 raises MaxRetryError (not an OSError), which used to end
    # the Lease loop for good.
    wait_for("a refused Lease renewal", lambda: "lease default/" in operator_log(world))
    healthy_for(world, 6)
    assert world.get("app.example")[0] == 200  # routes stay up meanwhile
    # The API server comes back empty, on the same port: the controller takes the Lease again
    # and writes status and Events on what is applied anew.
    world.start_apiserver(port=port)
    world.apply(
        ingress_class(),
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("app", "app.example", "app"),
        ingress("ghost", "ghost.example", "no-such-service"),
    )
    wait_for("the Lease taken again", lambda: lease_holder(world), timeout=30)
    wait_for("the status again", lambda: status_of(world, "app") == [{"ip": PUBLISHED}], 30)
    wait_for("an Event", lambda: "ServiceNotFound" in reasons(world, "ghost"), timeout=30)
    assert "Traceback" not in operator_log(world)
    assert world.health() == (200, "ok\n")


def test_500s_and_silent_calls_are_retried_until_they_pass(world: World) -> None:
    start(world)
    wait_for("the Lease", lambda: lease_holder(world))
    world.inject(
        {"match": "/leases", "answer": 500},
        {"match": "/events", "answer": "hang"},
        {"match": "/status", "answer": 500},
    )
    world.apply(
        ingress("app", "app.example", "app"), ingress("ghost", "ghost.example", "no-such-service")
    )
    wait_for("traffic", lambda: world.get("app.example")[0] == 200)
    wait_for("a failed status write", lambda: "cannot write the status" in operator_log(world))
    wait_for("a silent Event post", lambda: "no answer within 2s" in operator_log(world), 20)
    healthy_for(world, 3)
    assert status_of(world, "app") == []
    assert "lease default/" in operator_log(world)
    world.inject()
    # Retried with back-off (capped), so all of it lands within seconds of the API's return.
    wait_for("the status", lambda: status_of(world, "app") == [{"ip": PUBLISHED}], 40)
    wait_for("the Event", lambda: "ServiceNotFound" in reasons(world, "ghost"), 40)
    assert world.health() == (200, "ok\n")


# -- the dataplane going away and coming back -------------------------------------------------


def test_readyz_is_503_from_a_dataplane_restart_until_the_state_is_back(world: World) -> None:
    start(world, ingress("app", "app.example", "app"))
    wait_for("traffic", lambda: world.get("app.example")[0] == 200)
    world.processes["dataplane"].stop()
    wait_for("/readyz 503 once the dataplane is gone", lambda: world.health("/readyz")[0] == 503)
    assert world.health() == (200, "ok\n")  # alive: only not ready
    world.start_dataplane()
    # The restarted dataplane is empty: never ready before the routes are back.
    while world.health("/readyz")[0] != 200:
        time.sleep(0.02)
    assert world.get("app.example")[0] == 200


def test_the_first_push_starts_as_soon_as_the_command_socket_appears(world: World) -> None:
    world.processes.pop("dataplane").stop()
    world.socket.unlink(missing_ok=True)
    world.backend("127.0.0.2", "app-0")
    world.apply(
        ingress_class(),
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("app", "app.example", "app"),
    )
    world.start_operator()
    # Pushes fail meanwhile; the back-off grows to 8 s (after 0.5 + 1 + 2 + 4 s of retries).
    wait_for("five failed pushes", lambda: operator_log(world).count("retrying in") >= 5)
    world.start_dataplane()
    appeared = time.monotonic()
    wait_for("the first push", world.operator_ready, timeout=20)
    assert time.monotonic() - appeared < 3
    assert world.get("app.example")[0] == 200


def test_the_election_id_names_the_lease(world: World) -> None:
    world.apply(ingress_class())
    world.start_operator("--election-id", "edge-leader")
    wait_for("the first push", world.operator_ready)
    holder = wait_for("the edge-leader Lease", lambda: lease_holder(world, "edge-leader"))
    assert lease_holder(world) is None  # the default Lease is left alone
    assert holder
