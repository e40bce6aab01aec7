"""ingress-nginx's CORS annotations end to end (kmock + the real operator + the real dataplane
+ a real backend): an allowed preflight is answered 204 by the proxy and never reaches the
backend, an allowed origin gets the Access-Control-* headers on the backend's response, another
origin gets none, and a value that cannot be read is reported by an Event."""

from __future__ import annotations

import http.client
import json

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"
APP = "https://app.example.com"


def request(
    world: World, method: str, host: str, headers: dict[str, str]
) -> tuple[int, str, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=5)
    try:
        connection.request(method, "/", headers={"Host": host, **headers})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, body, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def cors(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


def test_cors_annotations_answer_preflights_and_add_headers(world: World) -> None:
    app = world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    annotations = {
        NGINX + "enable-cors": "true",
        NGINX + "cors-allow-origin": f"{APP}, https://*.example.org",
        NGINX + "cors-allow-methods": "GET, POST",
        NGINX + "cors-expose-headers": "X-Total",
        NGINX + "cors-max-age": "600",
    }
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("web", "web.example", "app", annotations=annotations),
        ingress("open", "open.example", "app"),
    )

    def served_with_cors() -> bool:
        # 200 too: the proxy's own answers (a 503 before the backends are pushed) carry CORS
        status, _, headers = request(world, "GET", "web.example", {"Origin": APP})
        return status == 200 and bool(cors(headers))

    wait_for("the CORS route and its backend", served_with_cors)
    hits = app.hits
    status, body, headers = request(
        world, "OPTIONS", "web.example", {"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    assert (status, body) == (204, "")
    assert app.hits == hits  # answered by the proxy
    assert cors(headers) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": (
            "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
            "Content-Type,Range,Authorization"
        ),
        "access-control-expose-headers": "X-Total",
        "access-control-max-age": "600",
    }
    status, body, headers = request(
        world, "GET", "web.example", {"Origin": "https://eu.example.org"}
    )
    assert (status, body) == (200, "app-0 /")
    assert headers["access-control-allow-origin"] == "https://eu.example.org"
    status, body, headers = request(world, "GET", "web.example", {"Origin": "https://evil.com"})
    assert (status, body) == (200, "app-0 /") and not cors(headers)
    status, _, headers = request(world, "GET", "open.example", {"Origin": APP})
    assert status == 200 and not cors(headers)  # another Ingress: no CORS
    # A value that cannot be read: reported by an Event, ingress-nginx's default applies.
    world.kubectl("annotate", "ingress", "web", "--overwrite", NGINX + "cors-max-age=ten")
    wait_for(
        "the default max age",
        lambda: (
            request(world, "GET", "web.example", {"Origin": APP})[2].get("access-control-max-age")
            == "1728000"
        ),
    )

    def reported() -> list[str]:
        items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
        return [
            event["message"]
            for event in items
            if event.get("involvedObject", {}).get("name") == "web"
            and NGINX + "cors-max-age" in event["message"]
        ]

    assert "'ten'" in wait_for("the Event naming cors-max-age", reported)[0]
    # enable-cors off: no CORS headers, and OPTIONS goes to the backend like any request.
    world.kubectl("annotate", "ingress", "web", "--overwrite", NGINX + "enable-cors=false")
    wait_for("CORS off", lambda: not cors(request(world, "GET", "web.example", {"Origin": APP})[2]))
    assert request(world, "OPTIONS", "web.example", {"Origin": APP})[0] == 501  # the backend's
