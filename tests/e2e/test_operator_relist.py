"""Objects deleted while a watch was down: after the watch ends with 410 Gone and kopf re-lists,
the controller sweeps them (its own listing), so their routes go; the others never blink.

kmock's watch faults (kmock_apiserver.py): "deaf" loses the events of a watch while it is set
(the watch is down), "gone" then ends the watch with 410 Gone, once.
"""

from __future__ import annotations

import time

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

INGRESS_WATCH = "GET /apis/networking.k8s.io/v1/ingresses"


def operator_log(world: World) -> str:
    return world.processes["operator"].log.read_text(errors="replace")


def serve(world: World, *ingresses: dict[str, object], flags: tuple[str, ...] = ()) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(
        ingress_class(),
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        *ingresses,
    )
    world.start_operator(*flags)
    wait_for("the first push", world.operator_ready)


def lose_the_deletion(world: World, name: str) -> None:
    """Delete an Ingress while its watch is deaf: the controller misses the event."""
    world.inject({"match": INGRESS_WATCH, "answer": "deaf"})
    time.sleep(0.3)  # every open watch has seen the rule (polled each 0.1 s)
    world.kubectl("delete", "ingress", name)


def test_an_ingress_deleted_while_the_watch_was_down_is_swept_after_410(world: World) -> None:
    serve(
        world,
        ingress("app", "app.example", "app"),
        ingress("old", "old.example", "app"),
        flags=("--sweep-period", "0"),  # only the re-list can find it
    )
    assert world.get("old.example")[0] == 200
    lose_the_deletion(world, "old")
    time.sleep(1.0)  # the debounce would have pushed by now, had the event come
    assert world.get("old.example")[0] == 200, "the deletion was seen: the watch was not down"
    world.inject({"match": INGRESS_WATCH, "answer": "gone"})  # the watch comes back: 410
    deadline = time.monotonic() + 20
    while world.get("old.example")[0] != 404:
        assert world.get("app.example")[0] == 200  # the rest is served all along
        assert time.monotonic() < deadline, "the deleted Ingress was never swept"
        time.sleep(0.05)
    assert world.get("app.example")[0] == 200
    log = operator_log(world)
    assert "ingresses re-listed" in log
    assert "1 ingresses deleted while the watch was down: default/old" in log
    assert world.health() == (200, "ok\n")


def test_a_relist_that_brings_nothing_is_caught_by_the_periodic_sweep(world: World) -> None:
    # The only Ingress goes: the re-list after 410 is empty, so no event says it happened.
    serve(world, ingress("old", "old.example", "app"), flags=("--sweep-period", "1"))
    lose_the_deletion(world, "old")
    world.inject({"match": INGRESS_WATCH, "answer": "gone"})
    wait_for("the periodic sweep", lambda: world.get("old.example")[0] == 404, timeout=20)
    assert "1 ingresses deleted while the watch was down" in operator_log(world)
