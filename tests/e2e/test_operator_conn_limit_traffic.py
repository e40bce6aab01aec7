"""ingress-nginx's `limit-connections` end to end (kmock + the real operator + the real
dataplane + a real backend that holds requests): a client with as many requests in flight as
the limit gets 503 for one more on any route of the Ingress (one zone), another client and an
exempt one (`limit-whitelist`) are served, and once the held requests end the client is served
again."""

from __future__ import annotations

import http.client
import http.server
import socket
import socketserver
import threading
from typing import Any

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


class HoldingBackend:
    """Answers `app-0 <path>`; a request for /hold waits until `release` is set."""

    def __init__(self, ip: str, port: int) -> None:
        outer = self
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/hold"):
                    outer.arrived.release()
                    outer.release.wait(30)
                body = f"app-0 {self.path}".encode()
                self.send_response(200)
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
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def status(world: World, host: str, source: str, path: str = "/") -> int:
    connection = http.client.HTTPConnection(
        "127.0.0.1", world.http_port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def hold(world: World, app: HoldingBackend, host: str, source: str) -> socket.socket:
    """A request from `source` that the backend has and holds."""
    sock = socket.create_connection(("127.0.0.1", world.http_port), 10, (source, 0))
    sock.sendall(f"GET /hold HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert app.arrived.acquire(timeout=10), "the held request never reached the backend"
    return sock


def test_limit_connections_answers_503_beyond_the_requests_in_flight(world: World) -> None:
    app = HoldingBackend("127.0.0.2", world.backend_port)
    world.backends.append(app)
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    annotations = {NGINX + "limit-connections": "2", NGINX + "limit-whitelist": "127.0.0.9"}
    web = ingress("web", "web.example", "app", annotations=annotations)
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        web,
        ingress("open", "open.example", "app"),
    )
    client = "127.0.0.5"
    wait_for("the route", lambda: status(world, "web.example", client) == 200)
    held = [hold(world, app, "web.example", client) for _ in range(2)]
    assert status(world, "web.example", client) == 503  # a third in flight
    assert status(world, "web.example", client, "/other/path") == 503  # the Ingress's zone
    assert status(world, "web.example", "127.0.0.6") == 200  # another client
    assert status(world, "open.example", client) == 200  # another Ingress
    exempt = [hold(world, app, "web.example", "127.0.0.9") for _ in range(3)]
    assert status(world, "web.example", "127.0.0.9") == 200  # limit-whitelist: not counted
    app.release.set()
    for sock in held + exempt:
        with sock:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    wait_for("the client served again", lambda: status(world, "web.example", client) == 200)
