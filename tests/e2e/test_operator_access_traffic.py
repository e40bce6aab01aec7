"""ingress-nginx's access annotations end to end (kmock + the real operator + the real
dataplane + real backends): source ranges answer 403 to other clients (behind a trusted
proxy, by X-Forwarded-For), rate limits answer 503 (or the controller's status) beyond the
burst, `proxy-body-size` answers 413, and an invalid source range fails closed (503)."""

from __future__ import annotations

import http.client
import json

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


def request(
    world: World,
    host: str,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, str]:
    """One request on a fresh connection from `source` (any 127.x address is local)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", world.http_port, timeout=5, source_address=(source, 0)
    )
    try:
        method = "GET" if body is None else "POST"
        connection.request(method, "/", body=body, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def serve(world: World, annotations: dict[str, str], *flags: str) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations", *flags)
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("web", "web.example", "app", annotations=annotations),
        ingress("open", "open.example", "app"),
    )
    wait_for("the open route", lambda: request(world, "open.example")[0] == 200)


def warnings(world: World, name: str) -> list[str]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        event["message"]
        for event in items
        if event.get("involvedObject", {}).get("name") == name and event["type"] == "Warning"
    ]


def test_source_ranges_let_only_the_listed_clients_in(world: World) -> None:
    serve(
        world,
        {
            NGINX + "whitelist-source-range": "127.0.0.4/30, 10.0.0.0/8",  # .4 to .7
            NGINX + "denylist-source-range": "127.0.0.6",
        },
    )
    wait_for("the allowed client", lambda: request(world, "web.example", "127.0.0.5")[0] == 200)
    assert request(world, "web.example", "127.0.0.5") == (200, "app-0 /")
    assert request(world, "web.example", "127.0.0.1")[0] == 403  # not in the list
    assert request(world, "web.example", "127.0.0.6")[0] == 403  # denied
    assert request(world, "open.example", "127.0.0.1")[0] == 200  # other Ingresses: open
    # An unreadable range: the Ingress fails closed, and the Event names the value.
    world.kubectl(
        "annotate", "ingress", "web", "--overwrite", NGINX + "whitelist-source-range=10.0.0.0/8,x"
    )
    wait_for("503 for everyone", lambda: request(world, "web.example", "127.0.0.5")[0] == 503)
    found = wait_for("the Warning", lambda: [m for m in warnings(world, "web") if "'x'" in m])
    assert NGINX + "whitelist-source-range" in found[0]


def test_source_ranges_read_x_forwarded_for_from_trusted_proxies_only(world: World) -> None:
    # The listener as a deployment's TOML has it; the controller adopts it unchanged.
    world.processes.pop("dataplane").stop()
    with world.config.open("a") as config:
        config.write(
            f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{world.http_port}"\n'
            'trusted_proxies = ["127.0.0.8"]\n'
        )
    world.start_dataplane()
    serve(world, {NGINX + "allowlist-source-range": "192.0.2.0/24"})
    forwarded = {"X-Forwarded-For": "192.0.2.9"}
    wait_for(
        "the forwarded client",
        lambda: request(world, "web.example", "127.0.0.8", forwarded)[0] == 200,
    )
    assert request(world, "web.example", "127.0.0.8")[0] == 403  # the proxy itself
    assert request(world, "web.example", "127.0.0.1", forwarded)[0] == 403  # not trusted


def test_rate_limits_answer_beyond_the_burst_and_spare_the_exempt(world: World) -> None:
    serve(
        world,
        {
            NGINX + "limit-rpm": "6",  # one every 10 s: nothing drains during the test
            NGINX + "limit-burst-multiplier": "1",  # burst 6: seven at once pass
            NGINX + "limit-whitelist": "127.0.0.9",
        },
        "--limit-req-status-code",
        "429",
    )
    source = "127.0.0.10"

    def limited() -> bool:  # the first requests may predate the route
        return request(world, "web.example", source)[0] == 429

    wait_for("the limit", limited)
    assert request(world, "web.example", source)[0] == 429  # still refused
    assert [request(world, "web.example", "127.0.0.11")[0] for _ in range(8)] == [200] * 7 + [429]
    assert [request(world, "web.example", "127.0.0.9")[0] for _ in range(10)] == [200] * 10
    assert request(world, "open.example", source)[0] == 200  # another Ingress: no limit


def test_limit_rps_answers_503_by_default(world: World) -> None:
    serve(world, {NGINX + "limit-rps": "1", NGINX + "limit-burst-multiplier": "0"})
    wait_for("the route", lambda: request(world, "web.example", "127.0.0.12")[0] == 200)
    # Burst 0: one request a second; a quick second one is refused with nginx's 503.
    statuses = [request(world, "web.example", "127.0.0.13")[0] for _ in range(3)]
    assert statuses[0] == 200 and 503 in statuses[1:]


def test_proxy_body_size_answers_413_and_the_controller_default_applies_elsewhere(
    world: World,
) -> None:
    serve(world, {NGINX + "proxy-body-size": "1k"}, "--proxy-body-size", "100")
    wait_for("the route", lambda: request(world, "web.example")[0] == 200)
    assert request(world, "web.example", body=b"x" * 1024) == (200, "app-0 / 1024")
    assert request(world, "web.example", body=b"x" * 1025)[0] == 413
    assert request(world, "open.example", body=b"x" * 100) == (200, "app-0 / 100")
    assert request(world, "open.example", body=b"x" * 101)[0] == 413  # --proxy-body-size
