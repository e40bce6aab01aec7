"""ingress-nginx's canary Ingresses end to end (kmock + the real operator + the real dataplane
+ two real backends): a canary Ingress on the main's host and path is no conflict; the header
("always"/"never", or an exact value), then the cookie, then the weight pick the canary's
backend; a canary without a main route serves nothing and says so in an Event."""

from __future__ import annotations

import http.client
import json

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(150)

NGINX = "nginx.ingress.kubernetes.io/"
WEIGHTED = 300  # requests: canary share 20% -> 60, sd ~6.9


def request(world: World, host: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def served_by(world: World, host: str, headers: dict[str, str] | None = None) -> str:
    status, body = request(world, host, headers)
    assert status == 200, (status, body)
    return body.split()[0]


def events(world: World, name: str) -> list[tuple[str, str, str]]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        (event["type"], event["reason"], event["message"])
        for event in items
        if event.get("involvedObject", {}).get("name") == name
    ]


def serve(world: World, canary: dict[str, str], canary_host: str = "web.example") -> None:
    world.backend("127.0.0.2", "main-0")
    world.backend("127.0.0.3", "canary-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    world.apply(
        service("main"),
        endpoint_slice("main", ["127.0.0.2"], world.backend_port),
        service("next"),
        endpoint_slice("next", ["127.0.0.3"], world.backend_port),
        ingress("web", "web.example", "main"),
        ingress(
            "web-canary", canary_host, "next", annotations={NGINX + "canary": "true", **canary}
        ),
    )
    wait_for("the main route", lambda: request(world, "web.example")[0] == 200)


def test_header_then_cookie_then_weight_reach_the_canary(world: World) -> None:
    serve(
        world,
        {
            NGINX + "canary-by-header": "X-Canary",
            NGINX + "canary-by-cookie": "beta",
            NGINX + "canary-weight": "20",
        },
    )
    always = {"X-Canary": "always"}
    wait_for("the canary", lambda: served_by(world, "web.example", always) == "canary-0")
    assert [served_by(world, "web.example", always) for _ in range(5)] == ["canary-0"] * 5
    never = {"X-Canary": "never", "Cookie": "beta=always"}
    assert [served_by(world, "web.example", never) for _ in range(20)] == ["main-0"] * 20
    cookie = {"X-Canary": "other", "Cookie": "a=1; beta=always"}
    assert [served_by(world, "web.example", cookie) for _ in range(5)] == ["canary-0"] * 5
    no_cookie = {"Cookie": "beta=never"}
    assert [served_by(world, "web.example", no_cookie) for _ in range(20)] == ["main-0"] * 20
    weighted = [served_by(world, "web.example") for _ in range(WEIGHTED)]
    share = weighted.count("canary-0")
    assert 25 <= share <= 100, share  # 20% of 300, more than 5 standard deviations wide
    assert weighted.count("main-0") == WEIGHTED - share
    conflicts = [e for e in events(world, "web-canary") if e[1] == "Conflict"]
    assert conflicts == []


def test_header_value_is_exact_and_a_new_weight_reaches_the_route(world: World) -> None:
    serve(
        world,
        {NGINX + "canary-by-header": "X-Region", NGINX + "canary-by-header-value": "eu"},
    )
    eu = {"X-Region": "eu"}
    wait_for("the canary", lambda: served_by(world, "web.example", eu) == "canary-0")
    assert served_by(world, "web.example", {"X-Region": "always"}) == "main-0"
    assert served_by(world, "web.example", {"X-Region": "eu-west"}) == "main-0"
    assert [served_by(world, "web.example") for _ in range(30)] == ["main-0"] * 30
    # A change of the canary Ingress reaches the live frontend: now every request.
    world.kubectl("annotate", "ingress", "web-canary", "--overwrite", NGINX + "canary-weight=100")
    wait_for("the new weight", lambda: served_by(world, "web.example") == "canary-0")
    assert [served_by(world, "web.example") for _ in range(20)] == ["canary-0"] * 20
    assert served_by(world, "web.example", {"X-Region": "eu"}) == "canary-0"


def test_a_canary_without_a_main_route_serves_nothing_and_says_so(world: World) -> None:
    serve(world, {NGINX + "canary-weight": "100"}, canary_host="lonely.example")

    def reported() -> list[tuple[str, str, str]]:
        return [e for e in events(world, "web-canary") if e[1] == "Canary"]

    found = wait_for("the Canary Event", reported)
    assert found[0][0] == "Warning" and "lonely.example/: no main Ingress serves it" in found[0][2]
    assert request(world, "lonely.example")[0] == 404
    assert [served_by(world, "web.example") for _ in range(10)] == ["main-0"] * 10
