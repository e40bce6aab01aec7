"""ingress-nginx's external authentication end to end (kmock + the real operator + the real
dataplane + a real auth service and app): `auth-url` naming an in-cluster Service guards the
Ingress's routes (allowed, 401 -> 302 to `auth-signin`, 403, the auth service's 500 -> 500),
and an `auth-url` pysozu cannot ask (`https://$host:8443/...`) fails closed with a Warning."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


class _Auth(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        _Auth.seen.append(headers)
        status = int(headers.get("x-want", "200"))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def auth_service() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.3", 0), _Auth)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Auth.seen = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(world: World, headers: dict[str, str]) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=5)
    try:
        connection.request("GET", "/p?q=1", headers={"Host": "web.example", **headers})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, response.getheader("Location") or "", body
    finally:
        connection.close()


def warnings(world: World, name: str) -> list[str]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        event["message"]
        for event in items
        if event.get("involvedObject", {}).get("name") == name and event["type"] == "Warning"
    ]


def test_auth_url_guards_the_routes_and_an_unservable_one_fails_closed(
    world: World, auth_service: int
) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    annotations = {
        NGINX + "auth-url": "http://auth.default.svc.cluster.local/check",
        NGINX + "auth-signin": "https://login.example/start",
    }
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        service("auth"),
        endpoint_slice("auth", ["127.0.0.3"], auth_service),
        ingress("web", "web.example", "app", annotations=annotations),
    )
    wait_for("the guarded route", lambda: request(world, {})[0] == 200)
    assert request(world, {}) == (200, "", "app-0 /p?q=1")
    assert _Auth.seen[-1]["x-original-url"] == "http://web.example/p?q=1"
    assert _Auth.seen[-1]["host"] == "auth.default.svc.cluster.local"
    status, location, _ = request(world, {"X-Want": "401"})
    assert (status, location) == (
        302,
        "https://login.example/start?rd=http://web.example/p%3Fq%3D1",
    )
    assert request(world, {"X-Want": "403"})[0] == 403
    assert request(world, {"X-Want": "500"})[0] == 500
    # nginx variables other than a `$host` authority: not asked, so the routes fail closed
    # (`https://$host/oauth2/auth` itself: test_operator_auth_host_traffic.py).
    world.kubectl(
        "annotate", "ingress", "web", "--overwrite", NGINX + "auth-url=https://$host:8443/auth"
    )
    wait_for("503 for everyone", lambda: request(world, {})[0] == 503)
    found = wait_for("the Warning", lambda: [m for m in warnings(world, "web") if "auth-url" in m])
    assert "nginx variables" in found[0]
