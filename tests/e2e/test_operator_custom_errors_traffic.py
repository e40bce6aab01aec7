"""ingress-nginx's `custom-http-errors` end to end (kmock + the real operator + the real
dataplane + real backends): a listed status from the app is served by the `default-backend`
Service with ingress-nginx's headers, other answers pass, and without a default backend the
Ingress is served as it is with a Warning Event."""

from __future__ import annotations

import http.client
import http.server
import json
import socketserver
import threading
from typing import Any

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


class StatusBackend:
    """`app`: /status/N answers N; `errors`: answers X-Code with what it got, as JSON."""

    def __init__(self, ip: str, port: int, errors: bool) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                got = {k.lower(): v for k, v in self.headers.items()}
                if errors:
                    status = int(got.get("x-code", "200"))
                    body = json.dumps({"path": self.path, "headers": got}).encode()
                else:
                    path = self.path.partition("?")[0]
                    status = int(path[8:]) if path.startswith("/status/") else 200
                    body = f"app {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((ip, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(world: World, host: str, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host, "Accept": "application/json"})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def warnings(world: World, name: str) -> list[str]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        event["message"]
        for event in items
        if event.get("involvedObject", {}).get("name") == name and event["type"] == "Warning"
    ]


def test_custom_http_errors_are_served_by_the_default_backend(world: World) -> None:
    for ip, errors in (("127.0.0.2", False), ("127.0.0.3", True)):
        world.backends.append(StatusBackend(ip, world.backend_port, errors))
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    pages = {NGINX + "custom-http-errors": "404,503", NGINX + "default-backend": "errors"}
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        service("errors"),
        endpoint_slice("errors", ["127.0.0.3"], world.backend_port),
        ingress("web", "web.example", "app", annotations=pages),
        service("other"),
        endpoint_slice("other", ["127.0.0.2"], world.backend_port),
        ingress("bare", "bare.example", "other", annotations={NGINX + "custom-http-errors": "404"}),
    )
    wait_for("the error page", lambda: get(world, "web.example", "/status/404")[1].startswith("{"))
    status, body = get(world, "web.example", "/status/404?x=1")
    assert status == 404
    seen = json.loads(body)
    assert seen["path"] == "/"
    headers = seen["headers"]
    assert headers["x-code"] == "404" and headers["x-format"] == "application/json"
    assert headers["x-original-uri"] == "/status/404?x=1"
    assert (headers["x-namespace"], headers["x-ingress-name"]) == ("default", "web")
    # The port as the Ingress names it (ingress-nginx's $service_port)
    assert (headers["x-service-name"], headers["x-service-port"]) == ("app", "http")
    assert headers["x-request-id"]
    assert get(world, "web.example", "/status/500") == (500, "app 500")  # not listed
    assert get(world, "web.example", "/") == (200, "app 200")
    # No default backend: served as it is, and a Warning says why.
    wait_for("the bare route", lambda: get(world, "bare.example", "/")[0] == 200)
    assert get(world, "bare.example", "/status/404") == (404, "app 404")
    found = wait_for(
        "the Warning", lambda: [m for m in warnings(world, "bare") if "custom-http-errors" in m]
    )
    assert "no default-backend" in found[0]
