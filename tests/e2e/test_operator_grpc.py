"""gRPC through the ingress controller: an Ingress annotated `backend-protocol: GRPC` makes an
h2c cluster, and a real grpcio client reaches a real grpcio server behind it (kmock + the real
operator + the real dataplane). The HTTP listener comes from the deployment's TOML with
`h2c = true` (behind a TLS-terminating load balancer); the controller adopts it."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from grpc_peers import EchoClient, EchoServer

pytestmark = pytest.mark.timeout(120)
NGINX = "nginx.ingress.kubernetes.io/"


def test_backend_protocol_grpc_carries_grpc_calls(world: World) -> None:
    world.processes.pop("dataplane").stop()
    with world.config.open("a") as config:
        config.write(
            f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{world.http_port}"\n'
            "h2c = true\n"
        )
    world.start_dataplane()
    with EchoServer() as server:
        world.apply(ingress_class())
        world.start_operator("--nginx-annotations")
        wait_for("the operator's first push (/readyz)", world.operator_ready)
        world.apply(
            service("grpc"),
            endpoint_slice("grpc", ["127.0.0.1"], server.port),
            ingress(
                "calls", "grpc.example", "grpc", annotations={NGINX + "backend-protocol": "GRPC"}
            ),
        )
        with EchoClient(f"127.0.0.1:{world.http_port}", authority="grpc.example") as client:

            def answered() -> bool:
                try:
                    return client.unary(b"ping", timeout=2) == b"ping"
                except grpc.RpcError:
                    return False

            wait_for("a gRPC call through the Ingress", answered)
            assert client.echo([b"a", b"b"]) == [b"a", b"b"]
            error = client.fail("bad")
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == "bad"
