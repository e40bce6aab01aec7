"""ingress-nginx's basic auth end to end: an htpasswd Secret (bcrypt and apr1 lines, as
`htpasswd -B` and `htpasswd -m` write them) guards the Ingress's routes through the real proxy;
a changed Secret applies at once; a missing one fails closed."""

from __future__ import annotations

import base64
import http.client
from typing import Any

import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service
from passlib.hash import apr_md5_crypt, bcrypt

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


def htpasswd(name: str, lines: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"namespace": "default", "name": name},
        "data": {"auth": base64.b64encode("\n".join(lines).encode()).decode()},
    }


def get(world: World, user: str | None = None, password: str = "") -> tuple[int, str]:
    """The status and the WWW-Authenticate header of a GET / on guarded.example."""
    headers = {"Host": "guarded.example"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    connection = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=5)
    try:
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("WWW-Authenticate") or ""
    finally:
        connection.close()


def test_basic_auth_from_an_htpasswd_secret(world: World) -> None:
    app = world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    bob = "bob:" + bcrypt.using(rounds=5, ident="2y").hash("hunter2")
    carol = "carol:" + apr_md5_crypt.hash("open sesame")
    annotations = {
        NGINX + "auth-type": "basic",
        NGINX + "auth-secret": "team",
        NGINX + "auth-realm": "Team only",
    }
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        htpasswd("team", [bob, carol]),
        ingress("guarded", "guarded.example", "app", annotations=annotations),
    )
    wait_for("the guarded route", lambda: get(world, "bob", "hunter2")[0] == 200)
    hits = app.hits
    assert get(world) == (401, 'Basic realm="Team only"')
    assert get(world, "bob", "wrong")[0] == 401
    assert get(world, "mallory", "hunter2")[0] == 401
    assert app.hits == hits  # nothing unauthenticated reached the backend
    assert get(world, "carol", "open sesame")[0] == 200
    # A new password in the Secret applies without touching the Ingress.
    world.apply(htpasswd("team", ["bob:" + apr_md5_crypt.hash("rotated")]))
    wait_for("the rotated password", lambda: get(world, "bob", "rotated")[0] == 200)
    assert get(world, "bob", "hunter2")[0] == 401
    assert get(world, "carol", "open sesame")[0] == 401
    # The Secret gone: the routes fail closed (503), they are never served openly.
    world.kubectl("delete", "secret", "team")
    wait_for("the routes failing closed", lambda: get(world, "bob", "rotated")[0] == 503)
