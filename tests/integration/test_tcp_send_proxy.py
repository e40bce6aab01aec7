"""`send_proxy` on TCP clusters, black-box: the backend parses the PROXY v2 header pysozu puts
before the client's bytes (SEND), or the one the client sent to an `expect_proxy` listener
(RELAY), with pysozu's own parser; and `cluster add --send-proxy` at run time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.proxy.proxy_protocol.header import ProxyHeader, parse_header, v2_header

pytestmark = pytest.mark.timeout(60)


class HeaderBackend:
    """A TCP backend reading one PROXY header, then echoing the bytes after it."""

    def __init__(self) -> None:
        self.headers: list[ProxyHeader] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            try:
                header = None
                while header is None:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                    header = parse_header(data)
                self.headers.append(header)
                rest = data[header.length :]
                while True:
                    if rest:
                        conn.sendall(rest)
                    rest = conn.recv(65536)
                    if not rest:
                        return
            except (OSError, ValueError):
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def backend() -> Iterator[HeaderBackend]:
    server = HeaderBackend()
    yield server
    server.close()


def config(port: int, backend: int, listener: str = "", cluster: str = "") -> str:
    return (
        f'worker_count = 1\n[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:{port}"\n'
        f'{listener}\n[clusters.t]\nprotocol = "tcp"\n{cluster}\n'
        f'frontends = [{{ address = "127.0.0.1:{port}" }}]\n'
        f'backends = [{{ address = "127.0.0.1:{backend}", backend_id = "b" }}]\n'
    )


def echo(port: int, payload: bytes, prefix: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(prefix + payload)
        got = b""
        while len(got) < len(payload):
            chunk = client.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_send_proxy_puts_the_client_address_in_a_v2_header(
    pysozu: Any, backend: HeaderBackend
) -> None:
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, backend.port, cluster="send_proxy = true"), workers=1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"hello")
        assert client.recv(100) == b"hello"  # the header went to the backend only
        source = client.getsockname()
    header = backend.headers[-1]
    assert header.version == 2 and not header.local
    assert header.source == source
    assert header.destination == ("127.0.0.1", port)
    assert "[clusters.t] send_proxy" not in proxy.log()  # no "not implemented" warning
    result = proxy.cli("-j", "metrics", "get")
    assert '"tcp.proxy_protocol.sent": {"inner": {"COUNT": 1}}' in result.stdout


def test_expect_and_send_relay_the_clients_header(pysozu: Any, backend: HeaderBackend) -> None:
    port = pysozu.free_port()
    pysozu.start(
        config(port, backend.port, listener="expect_proxy = true", cluster="send_proxy = true"),
        workers=1,
    )
    sent = v2_header(("203.0.113.7", 40000), ("198.51.100.1", 443))
    assert echo(port, b"payload", prefix=sent) == b"payload"
    header = backend.headers[-1]
    assert header.source == ("203.0.113.7", 40000)
    assert header.destination == ("198.51.100.1", 443)
    # v1 from the client: relayed as v2 (sozu speaks v2 only to backends)
    assert echo(port, b"again", prefix=b"PROXY TCP4 192.0.2.9 192.0.2.1 1234 80\r\n") == b"again"
    assert backend.headers[-1].version == 2
    assert backend.headers[-1].source == ("192.0.2.9", 1234)


def test_cluster_add_send_proxy_at_run_time(pysozu: Any, backend: HeaderBackend) -> None:
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, backend.port), workers=1)
    result = proxy.cli("cluster", "add", "-i", "t", "--send-proxy")
    assert result.returncode == 0, result.stderr
    assert "--send-proxy" not in result.stderr  # no "not applied" warning any more
    assert echo(port, b"late") == b"late"
    assert backend.headers[-1].destination == ("127.0.0.1", port)
