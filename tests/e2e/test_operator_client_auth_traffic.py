"""Client certificates through the ingress controller (kmock + the real operator + the real
dataplane): `auth-tls-secret` with `auth-tls-pass-certificate-to-upstream` and
`auth-tls-match-cn` asks for a certificate on the Ingress's host: without one 400, a verified
one reaches the backend with the `ssl-client-*` headers, another CN gets 403; a missing Secret
fails closed (503, an AnnotationNotEnforced Event)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service, tls_secret

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from h2_support import EchoBackend

pytestmark = pytest.mark.timeout(150)
NGINX = "nginx.ingress.kubernetes.io/"


@pytest.fixture
def echo() -> Iterator[EchoBackend]:
    backend = EchoBackend()
    try:
        yield backend
    finally:
        backend.stop()


def ca_secret(name: str, ca: trustme.CA) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"namespace": "default", "name": name},
        "data": {"ca.crt": base64.b64encode(ca.cert_pem.bytes()).decode()},
    }


def https(
    world: World, host: str, server_ca: trustme.CA | None, leaf: trustme.LeafCert | None
) -> tuple[int, bytes]:
    """GET /x over TLS with SNI and Host `host`, presenting `leaf` when given."""
    context = ssl.create_default_context()
    if server_ca is None:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    else:
        server_ca.configure_trust(context)
    if leaf is not None:
        leaf.configure_cert(context)
    try:
        raw = socket.create_connection(("127.0.0.1", world.https_port), timeout=5)
        with raw, context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    except OSError:
        return 0, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]) if head else 0, body


def test_auth_tls_secret_asks_for_and_passes_client_certificates(
    world: World, echo: EchoBackend
) -> None:
    server_ca, clients = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("mtls.example")
    alice = clients.issue_cert("alice.clients.test", common_name="alice")
    bob = clients.issue_cert("bob.clients.test", common_name="bob")
    annotations = {
        NGINX + "auth-tls-secret": "default/client-ca",
        NGINX + "auth-tls-pass-certificate-to-upstream": "true",
        NGINX + "auth-tls-match-cn": "CN=alice",
    }
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.1"], echo.port),
        tls_secret("app-tls", server.cert_chain_pems[0].bytes(), server.private_key_pem.bytes()),
        ca_secret("client-ca", clients),
        ingress("mtls", "mtls.example", "app", tls_secret="app-tls", annotations=annotations),
        ingress(
            "nosecret",
            "nosecret.example",
            "app",
            annotations={NGINX + "auth-tls-secret": "default/missing"},
        ),
    )
    status, body = wait_for(
        "alice through the Ingress",
        lambda: (
            found if (found := https(world, "mtls.example", server_ca, alice))[0] == 200 else None
        ),
    )
    headers = {name: value for name, value in json.loads(body)["headers"]}
    assert headers["ssl-client-verify"] == "SUCCESS"
    assert headers["ssl-client-subject-dn"].startswith("CN=alice")
    pem = urllib.parse.unquote(headers["ssl-client-cert"])
    assert pem == alice.cert_chain_pems[0].bytes().decode()
    status, body = https(world, "mtls.example", server_ca, None)
    assert status == 400 and b"No required SSL certificate was sent" in body
    assert https(world, "mtls.example", server_ca, bob)[0] == 403  # auth-tls-match-cn

    wait_for(
        "the refused route", lambda: https(world, "nosecret.example", None, None)[0] == 503 or None
    )

    def refusal_event() -> bool:
        events = world.kubectl("get", "events", "-o", "json")
        return "AnnotationNotEnforced" in events and "default/missing not found" in events

    wait_for("the AnnotationNotEnforced Event", lambda: refusal_event() or None)
