"""Per-Ingress timeouts and sticky cookie name, end to end: the annotations become the cluster's
own back_timeout and sticky_name in the real dataplane, and traffic follows them."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from typing import Any

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)
SLOW_SECONDS = 4.0


class SlowBackend:
    """Answers `/` at once and `/slow...` after SLOW_SECONDS."""

    def __init__(self, ip: str, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/slow"):
                    time.sleep(SLOW_SECONDS)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

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


def timed_get(world: World, host: str, path: str) -> tuple[int, float]:
    started = time.monotonic()
    status = world.get(host, path)[0]
    return status, time.monotonic() - started


def test_backend_timeout_and_cookie_name_annotations(world: World) -> None:
    backend = SlowBackend("127.0.0.2", world.backend_port)
    try:
        world.apply(ingress_class())
        world.start_operator()
        wait_for("the operator's first push (/readyz)", world.operator_ready)
        annotations = {
            "pysozu.io/backend-timeout": "1",
            "pysozu.io/sticky-sessions": "true",
            "pysozu.io/session-cookie-name": "APPID",
        }
        world.apply(
            service("fast"),
            endpoint_slice("fast", ["127.0.0.2"], world.backend_port),
            ingress("fast", "fast.example", "fast", annotations=annotations),
            service("plain"),
            endpoint_slice("plain", ["127.0.0.2"], world.backend_port),
            ingress("plain", "plain.example", "plain"),
        )
        for host in ("fast.example", "plain.example"):
            wait_for(f"traffic to {host}", lambda host=host: world.get(host)[0] == 200)
        cookie = world.get("fast.example")[2].get("set-cookie", "")
        assert cookie.startswith("APPID="), cookie
        status, took = timed_get(world, "fast.example", "/slow")
        assert status == 504 and took < 3.0, (status, took)
        # The other Ingress keeps the listener's back timeout: the slow answer arrives.
        status, took = timed_get(world, "plain.example", "/slow")
        assert status == 200 and took >= SLOW_SECONDS - 0.5, (status, took)
    finally:
        backend.stop()
