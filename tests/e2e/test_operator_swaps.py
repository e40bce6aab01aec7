"""Pushes are atomic for the clients: changing an Ingress's backend Service, or replacing every
endpoint of a Service, under load, and every request is answered 200 (no 404 from a route
between its removal and its re-addition, no 503 from a cluster between its old backends going
and its new ones coming)."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(180)

CLIENTS = 4
SWAPS = 6


class Load:
    """Keep-alive clients asking app.example in a loop until stopped (bounded by `stop`)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.statuses: Counter[int] = Counter()
        self.bodies: Counter[str] = Counter()
        self.last = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.world.http_port, timeout=5)
        while not self._stop.is_set():
            try:
                connection.request("GET", "/", headers={"Host": "app.example"})
                response = connection.getresponse()
                body = response.read().decode(errors="replace")
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                body, status = repr(error), 0
                connection.close()
            with self._lock:
                self.statuses[status] += 1
                if status != 200:
                    self.bodies[f"{status} {body[:60]}"] += 1
                else:
                    self.last = body.split()[0]
            if response.getheader("Connection", "").lower() == "close":
                connection.close()

    def wait_for_backend(self, name: str) -> None:
        before = sum(self.statuses.values())
        wait_for(f"answers from {name}", lambda: self.last == name, timeout=20)
        # a few more answers, so the swap is over before the next one starts
        wait_for("more answers", lambda: sum(self.statuses.values()) > before + 20, timeout=20)


def serve(world: World) -> None:
    world.backend("127.0.0.2", "blue")
    world.backend("127.0.0.3", "green")
    world.backend("127.0.0.4", "blue-next")
    world.apply(
        ingress_class(),
        service("blue"),
        service("green"),
        endpoint_slice("blue", ["127.0.0.2"], world.backend_port),
        endpoint_slice("green", ["127.0.0.3"], world.backend_port),
        ingress("app", "app.example", "blue"),
    )
    world.start_operator()
    wait_for("the first push", world.operator_ready)
    wait_for("blue", lambda: world.get("app.example")[1].startswith("blue"))


def test_changing_an_ingress_backend_under_load_answers_every_request(world: World) -> None:
    serve(world)
    with Load(world) as load:
        for swap in range(SWAPS):
            colour = "green" if swap % 2 == 0 else "blue"
            world.apply(ingress("app", "app.example", colour))
            load.wait_for_backend(colour)
    assert load.statuses[200] > 200
    assert set(load.statuses) == {200}, dict(load.bodies)


def test_replacing_every_endpoint_under_load_answers_every_request(world: World) -> None:
    serve(world)
    with Load(world) as load:
        for swap in range(SWAPS):
            ip, name = ("127.0.0.4", "blue-next") if swap % 2 == 0 else ("127.0.0.2", "blue")
            world.apply(endpoint_slice("blue", [ip], world.backend_port))
            load.wait_for_backend(name)
    time.sleep(0.2)
    assert load.statuses[200] > 200
    assert set(load.statuses) == {200}, dict(load.bodies)
