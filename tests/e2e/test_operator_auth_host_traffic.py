"""oauth2-proxy's usual setup end to end (kmock + the real operator + the real dataplane): the
app's Ingress says `auth-url: https://$host/oauth2/auth`, a second Ingress of the same host
routes `/oauth2` to the (fake) oauth2-proxy; the operator resolves the former to the latter's
Service (auth_host_routes.py). Without the cookie: 302 to `auth-signin`; with it: the app."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"
COOKIE = "_oauth2_proxy=signed-in"


class _Proxy(BaseHTTPRequestHandler):
    """A fake oauth2-proxy: /oauth2/auth answers 202 with the cookie, 401 without."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        _Proxy.seen.append((self.path, headers))
        if self.path.startswith("/oauth2/auth"):
            status = 202 if COOKIE in headers.get("cookie", "") else 401
            body = b""
        else:
            status, body = 200, b"oauth2-proxy " + self.path.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.3", 0), _Proxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Proxy.seen = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def get(world: World, target: str, headers: dict[str, str]) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=5)
    try:
        connection.request("GET", target, headers={"Host": "web.example", **headers})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, response.getheader("Location") or "", body
    finally:
        connection.close()


def test_host_relative_auth_url_asks_the_oauth2_ingress_of_the_same_host(
    world: World, proxy_port: int
) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    annotations = {
        NGINX + "auth-url": "https://$host/oauth2/auth",
        NGINX + "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
    }
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        service("oauth2-proxy"),
        endpoint_slice("oauth2-proxy", ["127.0.0.3"], proxy_port),
        ingress("web", "web.example", "app", annotations=annotations),
        ingress("oauth2", "web.example", "oauth2-proxy", path="/oauth2"),
    )
    signed_in = {"Cookie": COOKIE}
    wait_for("the guarded route", lambda: get(world, "/p?q=1", signed_in)[0] == 200)
    assert get(world, "/p?q=1", signed_in) == (200, "", "app-0 /p?q=1")
    path, headers = _Proxy.seen[-1]
    assert path == "/oauth2/auth"
    assert headers["host"] == "web.example"  # the request's own, as nginx's $host
    assert headers["x-original-url"] == "http://web.example/p?q=1"
    status, location, _ = get(world, "/p?q=1", {})
    assert status == 302
    assert location.startswith("https://web.example/oauth2/start?rd=")
    assert "p%3Fq%3D1" in location
    # the sign-in pages themselves are the oauth2 Ingress's, not guarded
    assert get(world, "/oauth2/start?rd=x", {}) == (200, "", "oauth2-proxy /oauth2/start?rd=x")
