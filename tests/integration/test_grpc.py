"""gRPC through pysozu: a real grpcio client over h2 (TLS, ALPN) to pysozu, and a real grpcio
server behind it spoken to in h2c (a cluster with `http2 = true`). Every call shape, trailers
(grpc-status, grpc-message, custom trailing metadata), 8 MiB messages across flow control,
cancels and deadlines reaching the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_peers import EchoClient, EchoServer
from https_support import Pki

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def server() -> Iterator[EchoServer]:
    with EchoServer() as running:
        yield running


def _config(port: int, backend: int, cert: dict[str, str]) -> str:
    return f"""
worker_count = 1

[[listeners]]
protocol = "https"
address = "127.0.0.1:{port}"

[clusters.grpc]
protocol = "http"
http2 = true
backends = [{{ address = "127.0.0.1:{backend}", backend_id = "grpc-1" }}]

[[clusters.grpc.frontends]]
address = "127.0.0.1:{port}"
hostname = "grpc.example.com"
certificate = "{cert["certificate"]}"
key = "{cert["key"]}"
"""


def _client(pysozu: Any, server: EchoServer, tmp_path: Path) -> EchoClient:
    pki = Pki(tmp_path)
    cert = pki.issue("grpc.example.com")
    port = pysozu.free_port()
    pysozu.start(_config(port, server.port, cert), workers=1)
    return EchoClient(
        f"127.0.0.1:{port}", root_certificates=pki.ca.cert_pem.bytes(),
        server_name="grpc.example.com",
    )  # fmt: skip


def test_every_call_shape_crosses(pysozu: Any, server: EchoServer, tmp_path: Path) -> None:
    with _client(pysozu, server, tmp_path) as client:
        assert client.unary(b"hello") == b"hello"
        assert client.repeat(5) == [b"part-%d" % n for n in range(5)]
        assert client.concat([b"a", b"b", b"c"]) == b"abc"
        assert client.echo([b"x", b"y", b"z"]) == [b"x", b"y", b"z"]
    assert server.calls == 4


def test_large_messages_cross_flow_control(pysozu: Any, server: EchoServer, tmp_path: Path) -> None:
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB each way
    with _client(pysozu, server, tmp_path) as client:
        assert client.unary(big, timeout=30) == big
        assert client.concat([big[:3_000_000], big[3_000_000:]], timeout=30) == big


def test_status_message_and_trailing_metadata_reach_the_client(
    pysozu: Any, server: EchoServer, tmp_path: Path
) -> None:
    with _client(pysozu, server, tmp_path) as client:
        error = client.fail("no such thing")
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "no such thing"
        assert ("x-detail", "no such thing") in tuple(error.trailing_metadata())


def test_a_client_cancel_resets_the_backend_stream(
    pysozu: Any, server: EchoServer, tmp_path: Path
) -> None:
    with _client(pysozu, server, tmp_path) as client:
        call = client.sleep_call(10.0)
        time.sleep(0.5)
        call.cancel()
        assert server.cancelled.wait(5.0), "the cancel did not reach the server"
        assert client.unary(b"still fine") == b"still fine"


def test_a_deadline_ends_the_call_and_the_backend_stream(
    pysozu: Any, server: EchoServer, tmp_path: Path
) -> None:
    with _client(pysozu, server, tmp_path) as client:
        call = client.sleep_call(10.0, timeout=0.5)
        with pytest.raises(grpc.RpcError) as raised:
            call.result()
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert server.cancelled.wait(5.0)


def test_many_calls_share_the_backend_connection(
    pysozu: Any, server: EchoServer, tmp_path: Path
) -> None:
    with _client(pysozu, server, tmp_path) as client:
        futures = [
            client._method(client.channel.unary_unary, "Unary").future(b"%d" % n, timeout=20)
            for n in range(300)
        ]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except grpc.RpcError as error:
                results.append(error)
        assert results == [b"%d" % n for n in range(300)]


def _h2c_config(port: int, backend: int, h2c: bool = True) -> str:
    return f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
h2c = {str(h2c).lower()}

[clusters.grpc]
protocol = "http"
http2 = true
backends = [{{ address = "127.0.0.1:{backend}", backend_id = "grpc-1" }}]
frontends = [{{ address = "127.0.0.1:{port}", hostname = "*" }}]
"""


def test_grpc_over_a_clear_text_h2c_listener(pysozu: Any, server: EchoServer) -> None:
    """Behind a TLS-terminating load balancer: prior-knowledge h2c on an HTTP listener."""
    port = pysozu.free_port()
    pysozu.start(_h2c_config(port, server.port), workers=1)
    with EchoClient(f"127.0.0.1:{port}") as client:
        assert client.unary(b"clear") == b"clear"
        assert client.echo([b"1", b"2"]) == [b"1", b"2"]
        error = client.fail("nope")
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_without_h2c_the_preface_is_a_bad_request(pysozu: Any, server: EchoServer) -> None:
    import socket

    port = pysozu.free_port()
    pysozu.start(_h2c_config(port, server.port, h2c=False), workers=1)
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
