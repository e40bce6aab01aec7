"""Backend TLS (pysozu extension `[clusters.<id>.backend_tls]`) through a real `pysozu start`:
plain HTTPS backends, SNI, verification (success, failure: the connect fails, counted and
logged), client certificates, pooled TLS connections reused, a handshake that never ends (the
connect timeout), and gRPC over TLS to a grpcio server (ALPN h2)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc_peers import EchoClient, EchoServer
from https_support import Pki
from tls_backends import TlsBackend, pattern

pytestmark = pytest.mark.timeout(90)

BACKEND_NAME = "backend.internal"


def _config(
    listen: int, backend: int, tls: str, prometheus: int | None = None, extra: str = ""
) -> str:
    metrics = f'[prometheus]\naddress = "127.0.0.1:{prometheus}"\n' if prometheus else ""
    return f"""worker_count = 1
{metrics}
[[listeners]]
protocol = "http"
address = "127.0.0.1:{listen}"

[clusters.app]
protocol = "http"
{extra}
frontends = [{{ address = "127.0.0.1:{listen}", hostname = "app.example" }}]
backends = [{{ address = "127.0.0.1:{backend}", backend_id = "tls-1" }}]

[clusters.app.backend_tls]
{tls}
"""


def _pem(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _get(port: int, sock: socket.socket | None = None) -> tuple[int, dict[str, Any], bytes]:
    """One GET; on `sock` (kept alive) or on a new connection (closed)."""
    own = sock is None
    conn = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        keep = "keep-alive" if not own else "close"
        conn.sendall(
            f"GET /hi HTTP/1.1\r\nHost: app.example\r\nConnection: {keep}\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(
                (
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                b"0",
            )
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            assert chunk
            body += chunk
        status = int(head.split(b" ", 2)[1])
        seen = json.loads(body) if status == 200 else {}
        return status, seen, body
    finally:
        if own:
            conn.close()


def test_plain_https_backend_without_sni(pysozu: Any) -> None:
    ca = trustme.CA()
    with TlsBackend(ca, BACKEND_NAME) as backend:
        port = pysozu.free_port()
        pysozu.start(_config(port, backend.port, "verify = false"), workers=1)
        status, seen, _ = _get(port)
        assert status == 200
        assert seen["path"] == "/hi"
        assert seen["sni"] is None  # no server_name: no SNI
        assert seen["alpn"] == "http/1.1"


def test_sni_is_sent_and_kept_alive_connections_are_reused(pysozu: Any) -> None:
    ca = trustme.CA()
    with TlsBackend(ca, BACKEND_NAME) as backend:
        port = pysozu.free_port()
        pysozu.start(_config(port, backend.port, f'server_name = "{BACKEND_NAME}"'), workers=1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            answers = [_get(port, client) for _ in range(5)]
        assert {status for status, _, _ in answers} == {200}
        assert {seen["sni"] for _, seen, _ in answers} == {BACKEND_NAME}
        assert len({seen["connection"] for _, seen, _ in answers}) == 1
        for _ in range(3):  # new client connections take the pooled backend connection
            assert _get(port)[0] == 200
        assert backend.server.handshakes == 1


def test_large_bodies_cross_whole_to_slow_and_fast_clients(pysozu: Any) -> None:
    ca = trustme.CA()
    size = 3 * 1024 * 1024 + 17
    with TlsBackend(ca, BACKEND_NAME) as backend:
        port = pysozu.free_port()
        pysozu.start(_config(port, backend.port, "verify = false"), workers=1)
        for slow in (False, True):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
                request = f"GET /big/{size} HTTP/1.1\r\nHost: app.example\r\n\r\n"
                client.sendall(request.encode())
                if slow:  # the client's buffers fill: the proxy stops reading, then resumes
                    time.sleep(1.0)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += client.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                while len(body) < size:
                    chunk = client.recv(4096 if slow else 262144)
                    assert chunk, len(body)
                    body += chunk
                assert body == pattern(size)


def test_verification_succeeds_against_the_ca(pysozu: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = _pem(tmp_path, "ca.pem", ca.cert_pem.bytes())
    with TlsBackend(ca, BACKEND_NAME) as backend:
        port = pysozu.free_port()
        tls = f'verify = true\nca = "{ca_file}"\nverify_name = "{BACKEND_NAME}"\nverify_depth = 1'
        pysozu.start(_config(port, backend.port, tls), workers=1)
        status, seen, _ = _get(port)
        assert status == 200
        assert seen["sni"] is None  # the name is verified, not sent (nginx's default)


@pytest.mark.parametrize(("depth", "status"), [(1, 200), (0, 503)])
def test_verify_depth_counts_intermediates(
    pysozu: Any, tmp_path: Path, depth: int, status: int
) -> None:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    ca_file = _pem(tmp_path, "ca.pem", root.cert_pem.bytes())
    with TlsBackend(intermediate, BACKEND_NAME) as backend:
        port = pysozu.free_port()
        tls = f'verify = true\nca = "{ca_file}"\nserver_name = "{BACKEND_NAME}"\n'
        instance = pysozu.start(
            _config(port, backend.port, tls + f"verify_depth = {depth}"), workers=1
        )
        assert _get(port)[0] == status
        if status != 200:
            assert "1 intermediate certificates, verify_depth is 0" in instance.log()


def _samples(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode()


@pytest.mark.parametrize("wrong", ["ca", "name"])
def test_verification_failure_is_a_failed_connect(pysozu: Any, tmp_path: Path, wrong: str) -> None:
    ca, other = trustme.CA(), trustme.CA()
    trusted = other if wrong == "ca" else ca
    ca_file = _pem(tmp_path, "ca.pem", trusted.cert_pem.bytes())
    name = "someone.else" if wrong == "name" else BACKEND_NAME
    with TlsBackend(ca, BACKEND_NAME) as backend:
        port, prometheus = pysozu.free_port(), pysozu.free_port()
        tls = f'verify = true\nca = "{ca_file}"\nserver_name = "{name}"'
        instance = pysozu.start(_config(port, backend.port, tls, prometheus), workers=1)
        status, _, _ = _get(port)
        assert status == 503  # as for a refused connect: no backend could be reached
        deadline = time.monotonic() + 10
        line = 'pysozu_cluster_upstream_tls_failures_total{cluster="app"} 1.0'
        while line not in (text := _samples(prometheus)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert line in text
        assert 'pysozu_cluster_upstream_connect_failures_total{cluster="app"} 1.0' in text
        log = instance.log()
        assert "cluster app: TLS with backend tls-1 at 127.0.0.1:" in log
        assert ("certificate verification failed" if wrong == "ca" else "match") in log


def test_client_certificate_for_a_backend_that_asks(pysozu: Any, tmp_path: Path) -> None:
    ca, clients = trustme.CA(), trustme.CA()
    leaf = clients.issue_cert("proxy.client", common_name="proxy.client")
    cert = _pem(tmp_path, "client.pem", b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key = _pem(tmp_path, "client.key", leaf.private_key_pem.bytes())
    with TlsBackend(ca, BACKEND_NAME, client_ca=clients) as backend:
        with_cert, without = pysozu.free_port(), pysozu.free_port()
        tls = f'certificate = "{cert}"\nkey = "{key}"'
        pysozu.start(_config(with_cert, backend.port, tls), workers=1)
        pysozu.start(_config(without, backend.port, "verify = false"), workers=1)
        status, seen, _ = _get(with_cert)
        assert status == 200
        assert seen["client"] == "proxy.client"
        # TLS 1.3: the client's handshake is over before the backend refuses it (an alert
        # in place of the answer), so this one is "closed before answering", not a connect.
        assert _get(without)[0] == 502


def test_a_handshake_that_never_ends_is_a_connect_timeout(pysozu: Any) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(silent.accept()[0])  # accepted, never a byte of TLS back
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        port = pysozu.free_port()
        config = _config(
            port, silent.getsockname()[1], "verify = false", extra="connect_timeout = 1"
        )
        pysozu.start(config, workers=1)
        started = time.monotonic()
        assert _get(port)[0] == 503
        assert time.monotonic() - started < 6
    finally:
        silent.close()
        for sock in held:
            sock.close()


def test_grpc_over_tls_to_the_backend(pysozu: Any, tmp_path: Path) -> None:
    backend_ca = trustme.CA()
    leaf = backend_ca.issue_cert("grpc.backend")
    credentials = grpc.ssl_server_credentials(
        [(leaf.private_key_pem.bytes(), b"".join(p.bytes() for p in leaf.cert_chain_pems))]
    )
    ca_file = _pem(tmp_path, "backend-ca.pem", backend_ca.cert_pem.bytes())
    pki = Pki(tmp_path)
    front = pki.issue("grpc.example.com")
    with EchoServer(credentials=credentials) as server:
        port = pysozu.free_port()
        config = f"""
worker_count = 1

[[listeners]]
protocol = "https"
address = "127.0.0.1:{port}"

[clusters.grpc]
protocol = "http"
http2 = true
backends = [{{ address = "127.0.0.1:{server.port}", backend_id = "grpc-1" }}]

[clusters.grpc.backend_tls]
server_name = "grpc.backend"
verify = true
ca = "{ca_file}"

[[clusters.grpc.frontends]]
address = "127.0.0.1:{port}"
hostname = "grpc.example.com"
certificate = "{front["certificate"]}"
key = "{front["key"]}"
"""
        pysozu.start(config, workers=1)
        with EchoClient(
            f"127.0.0.1:{port}",
            root_certificates=pki.ca.cert_pem.bytes(),
            server_name="grpc.example.com",
        ) as client:
            assert client.unary(b"ping") == b"ping"
            assert client.repeat(3) == [b"part-0", b"part-1", b"part-2"]
            assert client.echo([b"a", b"b"]) == [b"a", b"b"]
            error = client.fail("nope")
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == "nope"
        assert server.calls == 4
