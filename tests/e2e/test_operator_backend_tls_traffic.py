"""Backend TLS through the ingress controller (kmock + the real operator + the real dataplane):
`backend-protocol: HTTPS` with `proxy-ssl-secret` / `proxy-ssl-verify` / `proxy-ssl-name` /
`proxy-ssl-server-name` reaches a real HTTPS backend, verified against the Secret's ca.crt, with
SNI; a verification that fails answers 503; a missing Secret fails closed (503, an Event); and
`backend-protocol: GRPCS` carries gRPC calls to a grpcio server with TLS credentials."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from grpc_peers import EchoClient, EchoServer
from tls_backends import TlsBackend

pytestmark = pytest.mark.timeout(150)
NGINX = "nginx.ingress.kubernetes.io/"


def ca_secret(name: str, ca: trustme.CA, extra: dict[str, bytes] | None = None) -> dict[str, Any]:
    data = {"ca.crt": ca.cert_pem.bytes(), **(extra or {})}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"namespace": "default", "name": name},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def tls_annotations(secret: str, name: str = "api.internal") -> dict[str, str]:
    return {
        NGINX + "backend-protocol": "HTTPS",
        NGINX + "proxy-ssl-secret": f"default/{secret}",
        NGINX + "proxy-ssl-verify": "on",
        NGINX + "proxy-ssl-name": name,
        NGINX + "proxy-ssl-server-name": "on",
    }


def test_https_backends_verified_with_sni_and_failing_closed(world: World) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    with TlsBackend(ca, "api.internal") as backend:
        world.apply(ingress_class())
        world.start_operator("--nginx-annotations")
        wait_for("the operator's first push (/readyz)", world.operator_ready)
        world.apply(
            service("api"),
            endpoint_slice("api", ["127.0.0.1"], backend.port),
            ca_secret("backend-ca", ca),
            ca_secret("wrong-ca", stranger),
            ingress("good", "good.example", "api", annotations=tls_annotations("backend-ca")),
            ingress("wrong", "wrong.example", "api2", annotations=tls_annotations("wrong-ca")),
            ingress("nosecret", "nosecret.example", "api3", annotations=tls_annotations("missing")),
        )
        world.apply(
            service("api2"),
            endpoint_slice("api2", ["127.0.0.1"], backend.port),
            service("api3"),
            endpoint_slice("api3", ["127.0.0.1"], backend.port),
        )
        _, body, _ = wait_for(
            "the HTTPS backend through the Ingress",
            lambda: answer if (answer := world.get("good.example", "/tls"))[0] == 200 else None,
        )
        seen = json.loads(body)
        assert (seen["path"], seen["sni"], seen["alpn"]) == ("/tls", "api.internal", "http/1.1")
        handshakes = backend.server.handshakes
        for _ in range(3):  # kept-alive TLS connections to the backend are reused
            assert world.get("good.example")[0] == 200
        assert backend.server.handshakes == handshakes

        # A backend whose certificate the Secret's CA did not sign: the connect fails, 503
        # (a 503 also comes before the backend is pushed: wait for the failed verification).
        def verification_failed() -> bool:
            if world.get("wrong.example")[0] != 503:
                return False
            log = world.processes["dataplane"].log.read_text(errors="replace")
            return "certificate verification failed" in log

        wait_for("the wrong-CA route's failed verification", lambda: verification_failed() or None)
        # A missing Secret: the Ingress fails closed, whatever the backend would say.
        wait_for("the refused route", lambda: world.get("nosecret.example")[0] == 503 or None)

        def refusal_event() -> bool:
            events = world.kubectl("get", "events", "-o", "json")
            return "AnnotationNotEnforced" in events and "default/missing not found" in events

        wait_for("the AnnotationNotEnforced Event", lambda: refusal_event() or None)
        log = world.processes["dataplane"].log.read_text(errors="replace")
        assert "cluster default/api2:http: TLS with backend 127.0.0.1:" in log


def test_backend_protocol_grpcs_carries_grpc_calls(world: World) -> None:
    world.processes.pop("dataplane").stop()
    with world.config.open("a") as config:
        config.write(
            f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{world.http_port}"\n'
            "h2c = true\n"
        )
    world.start_dataplane()
    ca = trustme.CA()
    leaf = ca.issue_cert("grpc.internal")
    credentials = grpc.ssl_server_credentials(
        [(leaf.private_key_pem.bytes(), b"".join(p.bytes() for p in leaf.cert_chain_pems))]
    )
    with EchoServer(credentials=credentials) as server:
        world.apply(ingress_class())
        world.start_operator("--nginx-annotations")
        wait_for("the operator's first push (/readyz)", world.operator_ready)
        annotations = tls_annotations("grpc-ca", "grpc.internal")
        annotations[NGINX + "backend-protocol"] = "GRPCS"
        world.apply(
            service("grpc"),
            endpoint_slice("grpc", ["127.0.0.1"], server.port),
            ca_secret("grpc-ca", ca),
            ingress("calls", "grpc.example", "grpc", annotations=annotations),
        )
        with EchoClient(f"127.0.0.1:{world.http_port}", authority="grpc.example") as client:

            def answered() -> bool:
                try:
                    return client.unary(b"ping", timeout=2) == b"ping"
                except grpc.RpcError:
                    return False

            wait_for("a gRPC call over TLS to the backend", answered)
            assert client.echo([b"a", b"b"]) == [b"a", b"b"]
            error = client.fail("bad")
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == "bad"
