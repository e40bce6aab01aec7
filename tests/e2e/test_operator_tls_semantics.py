"""Ingress TLS semantics end to end, over real TLS: the defaultBackend and hosts without a
certificate answer on HTTPS with the listener's default certificate (as ingress-nginx's
default server does), a `tls` entry without hosts secures the rule hosts its certificate
covers, a key pair in an Opaque Secret is served, and `force-ssl-redirect` without TLS lands
on an HTTPS route that answers."""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any

import pytest
import trustme
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service, tls_secret

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


def https(world: World, host: str, ca: trustme.CA | None = None) -> tuple[int, str]:
    """GET / over TLS to 127.0.0.1 with SNI and Host `host`; the certificate verified against
    `ca` when given (else anything goes: the listener's default certificate)."""
    context = ssl.create_default_context()
    if ca is None:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    else:
        ca.configure_trust(context)
    try:
        with (
            socket.create_connection(("127.0.0.1", world.https_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(tls)
            response.begin()
            return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as error:
        return 0, str(error)


def start(world: World, *documents: dict[str, Any]) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    world.apply(service("app"), endpoint_slice("app", ["127.0.0.2"], world.backend_port))
    world.apply(*documents)


def test_the_default_backend_answers_on_https(world: World) -> None:
    body = ingress("fallback", "unused.example", "app")
    body["spec"] = {
        "ingressClassName": "pysozu",
        "defaultBackend": {"service": {"name": "app", "port": {"name": "http"}}},
    }
    start(world, body)
    wait_for("HTTP", lambda: world.get("any.example")[0] == 200)
    wait_for("HTTPS", lambda: https(world, "any.example") == (200, "app-0 /"))


def test_force_ssl_redirect_without_tls_lands_on_an_answering_https_route(world: World) -> None:
    start(
        world,
        ingress("web", "web.example", "app", annotations={NGINX + "force-ssl-redirect": "true"}),
    )
    wait_for("the redirect", lambda: world.get("web.example")[0] == 308)
    assert world.get("web.example")[2]["location"].startswith("https://web.example")
    wait_for("HTTPS", lambda: https(world, "web.example") == (200, "app-0 /"))


@pytest.mark.parametrize("kind", ["kubernetes.io/tls", "Opaque"])
def test_a_tls_entry_without_hosts_secures_the_hosts_its_certificate_covers(
    world: World, kind: str
) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("*.wild.example")
    secret = tls_secret(
        "wild-tls", issued.cert_chain_pems[0].bytes(), issued.private_key_pem.bytes()
    )
    secret["type"] = kind
    body = ingress("web", "a.wild.example", "app")
    body["spec"]["tls"] = [{"secretName": "wild-tls"}]  # no hosts
    start(world, secret, body)
    wait_for(
        "HTTPS with the Secret's certificate",
        lambda: https(world, "a.wild.example", ca) == (200, "app-0 /"),
    )
    status, _, headers = world.get("a.wild.example")
    assert status == 308 and headers["location"].startswith("https://a.wild.example")


def test_default_ssl_certificate_serves_hosts_without_their_own(world: World) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("plain.example", "named.example")
    secret = tls_secret(
        "fallback-tls", issued.cert_chain_pems[0].bytes(), issued.private_key_pem.bytes()
    )
    world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class(), secret)
    world.start_operator("--default-ssl-certificate", "default/fallback-tls")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    world.apply(service("app"), endpoint_slice("app", ["127.0.0.2"], world.backend_port))
    named = ingress("named", "named.example", "app")
    named["spec"]["tls"] = [{"hosts": ["named.example"]}]  # no secretName: the default one
    world.apply(ingress("plain", "plain.example", "app"), named)
    for host in ("plain.example", "named.example"):
        wait_for(
            f"{host} with the default certificate", lambda h=host: https(world, h, ca)[0] == 200
        )  # type: ignore[misc]
    assert world.get("plain.example")[0] == 200  # no tls entry: plain HTTP is not redirected
    assert world.get("named.example")[0] == 308  # its tls entry secures it: redirected
