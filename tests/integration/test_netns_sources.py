"""Client source addresses that really differ: clients on their own addresses in a network
namespace (tests/integration/netns_clients.py), a real pysozu in the root namespace.

- `max_connections_per_ip`: one address at its limit gets 429 while another is served.
- X-Forwarded-For / Forwarded carry the real source, not 127.0.0.1; `trusted_proxies` trusts
  one address's X-Forwarded-For and not another's.
- A frontend's `allowed_sources` / `denied_sources` answer 403 to the address they exclude.
- HRW and MAGLEV on TCP and UDP listeners hash the client IP: an address always gets the same
  backend, and addresses spread over the backends.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from http_support import Backend, Seen
from netns_clients import Clients, client_namespace, http_exchange, status_of
from test_tcp_proxy import EchoServer, recv_exactly
from test_udp_proxy import UdpEcho

pytestmark = pytest.mark.timeout(120)

HOST = "app.test"


@pytest.fixture
def clients() -> Iterator[Clients]:
    with client_namespace(count=16) as made:
        yield made


def echo_head(seen: Seen, conn: socket.socket) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.head), seen.head)


def http_toml(port: int, backend: int, global_keys: str = "", frontend: str = "") -> str:
    return (
        f"worker_count = 1\n{global_keys}\n"
        f'[[listeners]]\nprotocol = "http"\naddress = "0.0.0.0:{port}"\n'
        f'[clusters.app]\nprotocol = "http"\n'
        f'frontends = [{{ address = "0.0.0.0:{port}", hostname = "{HOST}"{frontend} }}]\n'
        f'backends = [{{ address = "127.0.0.1:{backend}", backend_id = "b" }}]\n'
    )


def get_from(clients: Clients, source: str, port: int, extra: str = "") -> bytes:
    with clients.connect(source, port) as sock:
        return http_exchange(sock, HOST, extra=extra + "Connection: close\r\n")


def header_values(response: bytes, name: str) -> list[str]:
    """Values of `name` in the request head a backend echoed as the response body."""
    body = response.partition(b"\r\n\r\n")[2]
    seen = Seen(body, b"")
    return seen.header(name)


def test_the_clients_really_have_their_own_addresses(clients: Clients) -> None:
    with socket.create_server(("0.0.0.0", 0)) as server:
        port = server.getsockname()[1]
        peers = set()
        for source in clients.addresses[:3]:
            with clients.connect(source, port):
                conn, peer = server.accept()
                conn.close()
                peers.add(peer[0])
    assert peers == set(clients.addresses[:3])
    assert "127.0.0.1" not in peers


def test_the_per_ip_limit_counts_each_address_on_its_own(pysozu: Any, clients: Clients) -> None:
    backend = Backend(echo_head)
    port = pysozu.free_port()
    pysozu.start(http_toml(port, backend.port, "max_connections_per_ip = 2"), workers=1)
    first, second = clients.addresses[:2]
    held = [clients.connect(first, port) for _ in range(2)]
    try:
        for sock in held:
            assert status_of(http_exchange(sock, HOST)) == 200
        # The third connection from `first` is over its limit ...
        answer = get_from(clients, first, port)
        assert status_of(answer) == 429, answer[:200]
        # ... while `second` has its own count.
        seconds = [clients.connect(second, port) for _ in range(2)]
        for sock in seconds:
            assert status_of(http_exchange(sock, HOST)) == 200
        assert status_of(get_from(clients, second, port)) == 429
        for sock in seconds:
            sock.close()
    finally:
        for sock in held:
            sock.close()


def test_forwarding_headers_carry_the_real_source(pysozu: Any, clients: Clients) -> None:
    backend = Backend(echo_head)
    port = pysozu.free_port()
    untrusted, trusted = clients.addresses[:2]
    toml = http_toml(port, backend.port).replace(
        f'address = "0.0.0.0:{port}"\n[clusters',
        f'address = "0.0.0.0:{port}"\ntrusted_proxies = ["{trusted}/32"]\n[clusters',
        1,
    )
    pysozu.start(toml, workers=1)
    for source in (untrusted, trusted):
        with clients.connect(source, port) as sock:
            own_port = sock.getsockname()[1]
            answer = http_exchange(sock, HOST, extra="X-Forwarded-For: 6.6.6.6\r\n")
        assert status_of(answer) == 200
        forwarded = header_values(answer, "Forwarded")
        assert len(forwarded) == 1 and f'for="{source}:{own_port}"' in forwarded[0], forwarded
        # An untrusted client's claim is dropped; a trusted proxy's is kept and appended to.
        expected = source if source == untrusted else f"6.6.6.6, {source}"
        assert header_values(answer, "X-Forwarded-For") == [expected]


def test_allowed_and_denied_sources_with_real_addresses(pysozu: Any, clients: Clients) -> None:
    backend = Backend(echo_head)
    allowed, other = clients.addresses[:2]
    port, denying = pysozu.free_port(), pysozu.free_port()
    toml = http_toml(port, backend.port, frontend=f', allowed_sources = ["{allowed}/32"]')
    toml += (
        f'[[listeners]]\nprotocol = "http"\naddress = "0.0.0.0:{denying}"\n'
        f'[clusters.other]\nprotocol = "http"\n'
        f'frontends = [{{ address = "0.0.0.0:{denying}", hostname = "{HOST}", '
        f'denied_sources = ["{other}/32"] }}]\n'
        f'backends = [{{ address = "127.0.0.1:{backend.port}", backend_id = "c" }}]\n'
    )
    pysozu.start(toml, workers=1)
    assert status_of(get_from(clients, allowed, port)) == 200
    assert status_of(get_from(clients, other, port)) == 403
    assert status_of(get_from(clients, allowed, denying)) == 200
    assert status_of(get_from(clients, other, denying)) == 403
    # A client claiming an allowed address in X-Forwarded-For is not believed.
    answer = get_from(clients, other, port, extra=f"X-Forwarded-For: {allowed}\r\n")
    assert status_of(answer) == 403


@pytest.mark.parametrize("algorithm", ["HRW", "MAGLEV"])
def test_tcp_hashing_keys_on_the_client_address(
    pysozu: Any, clients: Clients, algorithm: str
) -> None:
    servers = [EchoServer(greeting=f"b{n}".encode()) for n in range(2)]
    port = pysozu.free_port()
    entries = ", ".join(
        f'{{ address = "127.0.0.1:{s.port}", backend_id = "b{n}" }}' for n, s in enumerate(servers)
    )
    pysozu.start(
        f'worker_count = 1\n[[listeners]]\nprotocol = "tcp"\naddress = "0.0.0.0:{port}"\n'
        f'[clusters.t]\nprotocol = "tcp"\nload_balancing = "{algorithm}"\n'
        f'frontends = [{{ address = "0.0.0.0:{port}" }}]\nbackends = [{entries}]\n',
        workers=1,
    )
    try:
        chosen: dict[str, set[bytes]] = {}
        for source in clients.addresses:
            for _ in range(3):  # each time from a new source port
                with clients.connect(source, port) as sock:
                    chosen.setdefault(source, set()).add(recv_exactly(sock, 2))
        assert all(len(backends) == 1 for backends in chosen.values()), chosen
        # 16 addresses over two equal backends: all on one would be a 1 in 32,768 event.
        assert set().union(*chosen.values()) == {b"b0", b"b1"}, chosen
    finally:
        for server in servers:
            server.sock.close()


def test_udp_hashing_keys_on_the_client_address(pysozu: Any, clients: Clients) -> None:
    servers = [UdpEcho(f"b{n}") for n in range(2)]
    port = pysozu.free_port()
    entries = ", ".join(
        f'{{ address = "127.0.0.1:{s.port}", backend_id = "b{n}" }}' for n, s in enumerate(servers)
    )
    pysozu.start(
        f'worker_count = 1\n[[listeners]]\nprotocol = "udp"\naddress = "0.0.0.0:{port}"\n'
        f'[clusters.u]\nprotocol = "tcp"\nload_balancing = "HRW"\n'
        f'frontends = [{{ address = "0.0.0.0:{port}" }}]\nbackends = [{entries}]\n',
        workers=1,
    )
    try:
        chosen: dict[str, set[bytes]] = {}
        for source in clients.addresses:
            for _ in range(2):  # two flows (source ports) per address
                with clients.udp(source) as sock:
                    chosen.setdefault(source, set()).add(udp_ask(sock, clients, port))
        assert all(len(backends) == 1 for backends in chosen.values()), chosen
        assert set().union(*chosen.values()) == {b"b0", b"b1"}, chosen
        # The backends saw the proxy, not the clients (a flow has its own socket here).
        assert not any(source[0] in clients.addresses for s in servers for source in s.sources)
    finally:
        for server in servers:
            server.close()


def udp_ask(sock: socket.socket, clients: Clients, port: int) -> bytes:
    """The name of the backend that answered (retrying while the listener opens)."""
    for _ in range(20):
        sock.sendto(b"who", (clients.proxy_address, port))
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            continue
        assert source == (clients.proxy_address, port)
        return data.partition(b":")[0]
    raise AssertionError("no UDP answer")
