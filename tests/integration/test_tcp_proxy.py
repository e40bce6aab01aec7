"""TCP proxying, black-box: a real pysozu, echo backends in this process, raw client sockets.

sozu's tcp_tests scenarios (echo, large payloads, half-close, connect failure, soft stop with
active sessions) plus round robin, timeouts, runtime listeners through the CLI and memory.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024


class EchoServer:
    """A threaded TCP backend: sends `greeting` first, then echoes; `close_first` sends the
    greeting, shuts its side for writing and records what it still receives."""

    def __init__(self, greeting: bytes = b"", close_first: bool = False) -> None:
        self.greeting = greeting
        self.close_first = close_first
        self.received: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.greeting:
                    conn.sendall(self.greeting)
                if self.close_first:
                    conn.shutdown(socket.SHUT_WR)
                    chunks = []
                    while data := conn.recv(65536):
                        chunks.append(data)
                    self.received.append(b"".join(chunks))
                    return
                while data := conn.recv(262144):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[list[EchoServer]]:
    servers: list[EchoServer] = []
    yield servers
    for server in servers:
        server.close()


def tcp_config(port: int, backends: list[int], extra: str = "", listener: str = "") -> str:
    entries = ", ".join(
        f'{{ address = "127.0.0.1:{p}", backend_id = "b{n}" }}' for n, p in enumerate(backends)
    )
    return (
        f'{extra}\n[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:{port}"\n{listener}\n'
        f'[clusters.echo]\nprotocol = "tcp"\nload_balancing = "ROUND_ROBIN"\n'
        f'frontends = [{{ address = "127.0.0.1:{port}" }}]\nbackends = [{entries}]\n'
    )


def start(pysozu: Any, echo: list[EchoServer], count: int = 1, **kw: Any) -> tuple[Any, int]:
    for n in range(count):
        echo.append(EchoServer(greeting=f"b{n}\n".encode() if count > 1 else b""))
    port = pysozu.free_port()
    workers = 1 if "worker_count = 1" in kw.get("extra", "") else 2
    proxy = pysozu.start(tcp_config(port, [s.port for s in echo], **kw), workers=workers)
    return proxy, port


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        data = sock.recv(min(262144, size - got))
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_bytes_go_both_ways(pysozu: Any, echo: list[EchoServer]) -> None:
    _, port = start(pysozu, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        for message in (b"hello\n", b"x" * 100_000, b"\x00\xff binary"):
            client.sendall(message)
            assert recv_exactly(client, len(message)) == message


def test_ten_mebibytes_each_way_with_bounded_worker_memory(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    proxy, port = start(pysozu, echo, extra="worker_count = 1")
    (worker,) = proxy.workers()
    before = rss_kb(worker.pid)
    payload = os.urandom(MIB) * 10
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        received = recv_exactly(client, len(payload))
        sender.join()
        peak = rss_kb(worker.pid)
    assert received == payload
    # Two relay buffers and Python's own churn, never the transfer: 10 MiB would show.
    assert peak - before < 6 * 1024, (before, peak)


def test_client_half_close_is_passed_on_and_the_answer_still_comes(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    _, port = start(pysozu, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"last words")
        client.shutdown(socket.SHUT_WR)  # the echo backend sees EOF, answers, then closes
        assert recv_all(client) == b"last words"


def test_backend_half_close_is_passed_on_and_the_client_can_still_send(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    server = EchoServer(greeting=b"bye", close_first=True)
    echo.append(server)
    port = pysozu.free_port()
    pysozu.start(tcp_config(port, [server.port]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert recv_all(client) == b"bye"  # the backend's FIN reached the client
        client.sendall(b"still talking")  # ... and the other direction still carries
        client.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
    deadline = time.monotonic() + 5
    while not server.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.received == [b"still talking"]


def test_round_robin_over_two_backends(pysozu: Any, echo: list[EchoServer]) -> None:
    _, port = start(pysozu, echo, count=2, extra="worker_count = 1")
    seen = []
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            seen.append(recv_exactly(client, 3))
    assert sorted(seen) == [b"b0\n", b"b0\n", b"b1\n", b"b1\n"]
    assert seen[0] != seen[1] and seen[1] != seen[2]


def test_connect_failure_is_retried_on_another_backend(pysozu: Any, echo: list[EchoServer]) -> None:
    live = EchoServer(greeting=b"live")
    echo.append(live)
    dead = pysozu.free_port()  # nothing listens there: connection refused
    port = pysozu.free_port()
    proxy = pysozu.start(tcp_config(port, [dead, live.port]), workers=2)
    for _ in range(6):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            assert recv_exactly(client, 4) == b"live"
    assert proxy.process.poll() is None  # (connect errors are counted: see the metrics test)


def test_idle_client_is_closed_after_front_timeout(pysozu: Any, echo: list[EchoServer]) -> None:
    _, port = start(pysozu, echo, listener="front_timeout = 1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        started = time.monotonic()
        assert client.recv(10) == b""  # closed by the proxy, not by the 10 s client timeout
        assert time.monotonic() - started < 4


def test_soft_stop_lets_open_connections_finish(pysozu: Any, echo: list[EchoServer]) -> None:
    proxy, port = start(pysozu, echo)
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"before")
    assert recv_exactly(client, 6) == b"before"
    outcome: list[Any] = []
    stopper = threading.Thread(target=lambda: outcome.append(proxy.cli("shutdown")))
    stopper.start()
    time.sleep(1.0)
    assert not outcome, "the soft stop must wait for the open TCP connection"
    client.sendall(b"during")
    assert recv_exactly(client, 6) == b"during"
    client.close()
    stopper.join(timeout=20)
    assert outcome and outcome[0].returncode == 0, outcome
    assert proxy.process.wait(timeout=10) == 0


def test_listener_and_frontend_added_and_removed_through_the_cli(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    server = EchoServer()
    echo.append(server)
    http_port, port = pysozu.free_port(), pysozu.free_port()
    proxy = pysozu.start(f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{http_port}"\n')
    address = f"127.0.0.1:{port}"
    for argv in (
        ["cluster", "add", "-i", "echo"],
        ["backend", "add", "-i", "echo", "--backend-id", "e1", "-a", f"127.0.0.1:{server.port}"],
        ["listener", "tcp", "add", "-a", address, "--front-timeout", "30"],
        ["listener", "tcp", "activate", "-a", address],
        ["frontend", "tcp", "add", "-i", "echo", "-a", address],
    ):
        result = proxy.cli(*argv)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"runtime")
        assert recv_exactly(client, 7) == b"runtime"
    listed = proxy.cli("frontend", "list", "--tcp")
    assert listed.returncode == 0 and address in listed.stdout, listed.stdout
    assert proxy.cli("frontend", "tcp", "remove", "-i", "echo", "-a", address).returncode == 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert client.recv(10) == b""  # a listener without a frontend closes at once
    for argv in (["listener", "tcp", "deactivate", "-a", address],):
        assert proxy.cli(*argv).returncode == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert proxy.cli("listener", "tcp", "remove", "-a", address).returncode == 0


def test_sozu_shaped_toml_loads_without_a_tcp_warning(pysozu: Any, echo: list[EchoServer]) -> None:
    servers = [EchoServer(greeting=b"w"), EchoServer(greeting=b"w")]
    echo.extend(servers)
    port = pysozu.free_port()
    toml = f"""
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:{port}"
front_timeout = 60
back_timeout = 30
connect_timeout = 3

[clusters.MyTcpCluster]
protocol = "tcp"
load_balancing = "RANDOM"
frontends = [{{ address = "127.0.0.1:{port}" }}]
backends = [
  {{ address = "127.0.0.1:{servers[0].port}", weight = 10 }},
  {{ address = "127.0.0.1:{servers[1].port}", weight = 90, backup = false }},
]
"""
    proxy = pysozu.start(toml)
    assert "not supported" not in proxy.log()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert recv_exactly(client, 1) == b"w"


def echo_once(port: int, message: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(message)
        return recv_exactly(client, len(message))


def test_worker_upgrade_hands_the_tcp_listener_over_and_keeps_open_connections(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    proxy, port = start(pysozu, echo, extra="worker_count = 1")
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"old")
    assert recv_exactly(client, 3) == b"old"
    outcome: list[Any] = []
    upgrader = threading.Thread(
        target=lambda: outcome.append(proxy.cli("upgrade", "--worker", "0", timeout=60))
    )
    upgrader.start()
    time.sleep(1.5)
    assert echo_once(port, b"new worker") == b"new worker"  # the new worker serves
    client.sendall(b"still")  # the old one drains the connection it had
    assert recv_exactly(client, 5) == b"still"
    client.close()
    upgrader.join(timeout=60)
    assert outcome and outcome[0].returncode == 0, outcome[0].stderr
    assert echo_once(port) == b"ping"


def test_a_killed_worker_is_replaced_and_serves_the_tcp_listener(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    proxy, port = start(pysozu, echo, extra="worker_count = 1")
    (victim,) = proxy.workers()
    os.kill(victim.pid, 9)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = proxy.workers()
        if workers and all(w.pid != victim.pid for w in workers):
            break
        time.sleep(0.1)
    proxy.wait_ready(1)
    assert echo_once(port) == b"ping"


def test_metrics_count_tcp_connections_bytes_and_connect_failures(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    live = EchoServer()
    echo.append(live)
    dead, port = pysozu.free_port(), pysozu.free_port()
    proxy = pysozu.start("worker_count = 1\n" + tcp_config(port, [dead, live.port]), workers=1)
    for _ in range(3):
        assert echo_once(port, b"12345") == b"12345"
    result = proxy.cli("-j", "metrics", "get")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for name in ("tcp.requests", "tcp.bytes_in", "protocol.tcp", "backend.connections.error"):
        assert name in text, name


def test_per_ip_limit_closes_extra_connections_before_any_backend(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    server = EchoServer()
    echo.append(server)
    port = pysozu.free_port()
    proxy = pysozu.start(
        "worker_count = 1\nmax_connections_per_ip = 1\n" + tcp_config(port, [server.port]),
        workers=1,
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
        first.sendall(b"one")
        assert recv_exactly(first, 3) == b"one"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
            assert second.recv(10) == b""  # closed at once
        assert server.connections == 1
    assert proxy.process.poll() is None


def test_reload_applies_a_changed_tcp_cluster(pysozu: Any, echo: list[EchoServer]) -> None:
    first, second = EchoServer(greeting=b"1"), EchoServer(greeting=b"2")
    echo.extend([first, second])
    port = pysozu.free_port()
    proxy = pysozu.start(tcp_config(port, [first.port]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert recv_exactly(client, 1) == b"1"
    text = proxy.config_path.read_text().replace(str(first.port), str(second.port))
    proxy.config_path.write_text(text)
    result = proxy.cli("reload")
    assert result.returncode == 0, result.stderr
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert recv_exactly(client, 1) == b"2"


def test_expect_proxy_on_a_tcp_listener_takes_the_header_off(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    _, port = start(pysozu, echo, listener="expect_proxy = true")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\npayload")
        assert recv_exactly(client, 7) == b"payload"  # the backend never saw the header


def test_main_and_worker_upgrade_keep_the_tcp_listener(pysozu: Any, echo: list[EchoServer]) -> None:
    proxy, port = start(pysozu, echo)
    assert echo_once(port) == b"ping"
    result = proxy.cli("upgrade", timeout=90)
    assert result.returncode == 0, result.stderr
    for _ in range(4):
        assert echo_once(port) == b"ping"
    assert proxy.cli("shutdown").returncode == 0


def test_soft_stop_deadline_closes_a_connection_that_does_not_end(
    pysozu: Any, echo: list[EchoServer]
) -> None:
    proxy, port = start(pysozu, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
        assert echo_once(port) == b"ping"
        client.sendall(b"open")
        assert recv_exactly(client, 4) == b"open"
        started = time.monotonic()
        result = proxy.cli("shutdown", "--deadline", "2", timeout=30)
        assert result.returncode == 0, result.stderr
        assert 1.5 < time.monotonic() - started < 10
        assert client.recv(10) == b""  # cut when the deadline came
    assert proxy.process.wait(timeout=10) == 0


def buffer_gauges(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    found: dict[str, float] = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(("pysozu_buffer_in_use", "pysozu_protocol_tcp")):
            found[name.split("{")[0]] = found.get(name.split("{")[0], 0) + float(value)
    return found


def test_idle_tcp_connections_hold_no_buffer(pysozu: Any, echo: list[EchoServer]) -> None:
    prometheus = pysozu.free_port()
    extra = f'worker_count = 1\n[prometheus]\naddress = "127.0.0.1:{prometheus}"\n'
    proxy, port = start(pysozu, echo, extra=extra)
    (worker,) = proxy.workers()
    before = rss_kb(worker.pid)
    clients = []
    try:
        for _ in range(200):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"x" * 1000)
            assert recv_exactly(client, 1000) == b"x" * 1000
            clients.append(client)
        time.sleep(2.5)  # the pool's sweep takes back what idle connections hold
        figures = buffer_gauges(prometheus)
        held = rss_kb(worker.pid)
    finally:
        for client in clients:
            client.close()
    assert figures.get("pysozu_buffer_in_use") == 0, figures
    assert figures.get("pysozu_protocol_tcp") == 200, figures
    assert held - before < 10 * 1024, (before, held)


def test_state_saved_by_one_proxy_serves_tcp_when_loaded_by_another(
    pysozu: Any, echo: list[EchoServer], tmp_path: Any
) -> None:
    donor, port = start(pysozu, echo)
    state_file = tmp_path / "tcp.state"
    assert donor.cli("state", "save", "-f", str(state_file)).returncode == 0
    assert donor.cli("shutdown", "--hard").returncode == 0
    donor.process.wait(timeout=10)
    http_port = pysozu.free_port()
    proxy = pysozu.start(f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{http_port}"\n')
    result = proxy.cli("state", "load", "-f", str(state_file))
    assert result.returncode == 0, result.stderr
    assert echo_once(port, b"restored") == b"restored"
