"""ingress-nginx's cookie affinity end to end: the real operator maps `affinity: cookie` and the
`session-cookie-*` attributes onto the cluster, and the real proxy sets the cookie ingress-nginx
would (HttpOnly, Secure over TLS only) and keeps a client that sends it on one backend."""

from __future__ import annotations

import http.client
import ssl

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


class _SniConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1 with sticky.example as SNI (the proxy answers 421 without it)."""

    def connect(self) -> None:
        super().connect()
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname="sticky.example")


def get(world: World, cookie: str | None = None, tls: bool = False) -> tuple[str, str]:
    """The body and the Set-Cookie header of a GET / on sticky.example."""
    connection: http.client.HTTPConnection
    if tls:
        connection = _SniConnection("127.0.0.1", world.https_port, timeout=5)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=5)
    headers = {"Host": "sticky.example"}
    if cookie is not None:
        headers["Cookie"] = cookie
    try:
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        return response.read().decode(), response.getheader("Set-Cookie") or ""
    finally:
        connection.close()


def test_cookie_affinity_attributes_and_stickiness(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    world.backend("127.0.0.3", "app-1")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    annotations = {
        NGINX + "affinity": "cookie",
        NGINX + "session-cookie-max-age": "3600",
        NGINX + "session-cookie-samesite": "Lax",
        NGINX + "affinity-mode": "persistent",
    }
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2", "127.0.0.3"], world.backend_port),
        ingress("sticky", "sticky.example", "app", annotations=annotations),
    )
    body, set_cookie = wait_for("the sticky route", lambda: get(world) if get(world)[1] else None)
    name_value, *attributes = set_cookie.split("; ")
    assert name_value.startswith("INGRESSCOOKIE=")
    assert attributes == ["Path=/", "Max-Age=3600", "SameSite=Lax", "HttpOnly"]
    for _ in range(6):  # the cookie keeps the client on one backend, with no new cookie
        assert get(world, cookie=name_value) == (body, "")
    _, over_tls = get(world, tls=True)
    assert over_tls.endswith("; HttpOnly; Secure")
