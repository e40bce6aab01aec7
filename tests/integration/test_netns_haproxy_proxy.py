"""HAProxy in front of a real pysozu, sending PROXY v1 (`send-proxy`) and v2 (`send-proxy-v2`),
with a client on its own address in a network namespace (netns_clients.py): the address pysozu
must report is the client's, which neither HAProxy's (127.0.0.1) nor pysozu's peer is.

- HTTP listener with `expect_proxy`: X-Forwarded-For / Forwarded at the backend, and the access
  log's client address.
- TCP listener with `expect_proxy` and a `send_proxy` cluster: the v2 header pysozu relays to the
  backend carries the client's address and port, and so does the TCP access log line.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_support import Backend
from netns_clients import Clients, client_namespace, http_exchange, status_of
from test_netns_sources import echo_head, header_values
from test_observability_access_logs import lines_of
from test_tcp_send_proxy import HeaderBackend

pytestmark = pytest.mark.timeout(90)

HAPROXY_LIFETIME = 80  # seconds at most, even if this test process dies without stopping it
HOST = "app.test"


@pytest.fixture
def clients() -> Iterator[Clients]:
    with client_namespace(count=1) as made:
        yield made


@contextlib.contextmanager
def haproxy(tmp_path: Path, send: str, routes: dict[int, int]) -> Iterator[None]:
    """HAProxy in TCP mode: for each (edge port -> pysozu port), a frontend on 0.0.0.0:edge
    whose server is 127.0.0.1:pysozu with the `send` option."""
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (scripts/test installs it)")
    sections = [
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n"
    ]
    for n, (edge, target) in enumerate(routes.items()):
        sections.append(
            f"frontend edge{n}\n  bind 0.0.0.0:{edge}\n  default_backend pz{n}\n"
            f"backend pz{n}\n  server s 127.0.0.1:{target} {send}\n"
        )
    config = tmp_path / "haproxy.cfg"
    config.write_text("".join(sections))
    log_path = tmp_path / "haproxy.log"
    with open(log_path, "wb") as log:
        command = ["timeout", str(HAPROXY_LIFETIME), "haproxy", "-f", str(config), "-db"]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        for edge in routes:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", edge), 1):
                    break
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def access_records(path: Path, address: str, count: int) -> list[dict[str, Any]]:
    """The access log's records of clients at `address`, once there are `count` (the edge's
    readiness checks above came from 127.0.0.1 and have lines of their own)."""
    deadline = time.monotonic() + 5
    while True:
        records = [json.loads(line) for line in lines_of(path, 1, timeout=1)]
        mine = [r for r in records if r["client_address"].rpartition(":")[0] == address]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_proxy_headers_carry_the_client_address_through_pysozu(
    pysozu: Any, clients: Clients, tmp_path: Path, send: str
) -> None:
    web = Backend(echo_head)
    relay = HeaderBackend()
    http_port, tcp_port = pysozu.free_port(), pysozu.free_port()
    http_edge, tcp_edge = pysozu.free_port(), pysozu.free_port()
    log_path = tmp_path / "access.log"
    pysozu.start(
        f'worker_count = 1\naccess_logs_target = "file://{log_path}"\n'
        'access_logs_format = "json"\n'
        f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{http_port}"\n'
        "expect_proxy = true\n"
        f'[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:{tcp_port}"\n'
        "expect_proxy = true\n"
        f'[clusters.web]\nprotocol = "http"\n'
        f'frontends = [{{ address = "127.0.0.1:{http_port}", hostname = "{HOST}" }}]\n'
        f'backends = [{{ address = "127.0.0.1:{web.port}", backend_id = "w" }}]\n'
        f'[clusters.relay]\nprotocol = "tcp"\nsend_proxy = true\n'
        f'frontends = [{{ address = "127.0.0.1:{tcp_port}" }}]\n'
        f'backends = [{{ address = "127.0.0.1:{relay.port}", backend_id = "r" }}]\n',
        workers=1,
    )
    [client_address] = clients.addresses
    try:
        with haproxy(tmp_path, send, {http_edge: http_port, tcp_edge: tcp_port}):
            # HTTP: the backend sees the client's address, twice on one kept-alive connection.
            with clients.connect(client_address, http_edge) as sock:
                client_port = sock.getsockname()[1]
                for _ in range(2):
                    answer = http_exchange(sock, HOST, extra="X-Forwarded-For: 6.6.6.6\r\n")
                    assert status_of(answer) == 200, answer[:300]
                    # HAProxy adds no HTTP header: the client's claim is not believed.
                    assert header_values(answer, "X-Forwarded-For") == [client_address]
                    forwarded = header_values(answer, "Forwarded")
                    assert f'for="{client_address}:{client_port}"' in forwarded[0], forwarded
                    # The address the client connected to is HAProxy's, on our veth end.
                    assert header_values(answer, "X-Forwarded-Port") == [str(http_edge)]
            # TCP: the header relayed to the backend is the client's, as v2.
            with clients.connect(client_address, tcp_edge) as sock:
                tcp_client_port = sock.getsockname()[1]
                sock.sendall(b"hello")
                assert sock.recv(100) == b"hello"
            header = relay.headers[-1]
            assert header.version == 2 and not header.local
            assert header.source == (client_address, tcp_client_port)
            assert header.destination == (clients.proxy_address, tcp_edge)
        records = access_records(log_path, client_address, 3)
    finally:
        relay.close()
    by_protocol: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_protocol.setdefault(record["protocol"], []).append(record)
    http_lines = [r for p, rs in by_protocol.items() if p != "TCP" for r in rs]
    assert len(http_lines) == 2, records
    for record in http_lines:
        assert record["client_address"] == f"{client_address}:{client_port}", record
    [tcp_line] = by_protocol["TCP"]
    assert tcp_line["client_address"] == f"{client_address}:{tcp_client_port}", tcp_line
    assert tcp_line["cluster_id"] == "relay"
