"""UDP backend probes, black-box (`[clusters.<id>.udp.health]`, sozu 2.1): a UDP_PROBE backend
that stops answering its probes leaves rotation after `fall` probes and comes back after
`rise`; a TCP_PROBE backend whose TCP port closes does too; `fail_open = false` refuses new
flows when every backend is unhealthy (`udp.datagrams.dropped.no_backend`), the default keeps
serving them. `backend list` and `status` show the verdicts."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_udp_proxy import client, exchange, udp_config, wait_metric

pytestmark = pytest.mark.timeout(120)

PROBE = b"probe"
UDP_PROBE = 'mode = "UDP_PROBE"\nudp_probe_payload = "probe"\n'
FAST = "probe_interval_seconds = 1\nprobe_timeout_seconds = 1\nrise = 2\nfall = 2\n"


class Backend:
    """A UDP echo answering `<name>:<datagram>`; it answers the probe payload only while
    `answer_probes`, and serves a TCP port of the same number while `tcp` is open."""

    def __init__(self, name: str, free_port: Any) -> None:
        self.name = name.encode()
        self.answer_probes = True
        self.probes = 0
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.tcp: socket.socket | None = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65535)
            except OSError:
                return
            if data == PROBE:
                self.probes += 1
                if not self.answer_probes:
                    continue
            try:
                self.sock.sendto(self.name + b":" + data, source)
            except OSError:
                return

    def close_tcp(self) -> None:
        if self.tcp is not None:
            self.tcp.close()
            self.tcp = None

    def open_tcp(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", self.port))

    def close(self) -> None:
        self.sock.close()
        self.close_tcp()


@pytest.fixture
def make(pysozu: Any) -> Iterator[Any]:
    made: list[Backend] = []

    def backend(name: str) -> Backend:
        made.append(Backend(name, pysozu.free_port))
        return made[-1]

    yield backend
    for server in made:
        server.close()


def start(pysozu: Any, backends: list[Backend], health: str) -> tuple[Any, int]:
    port = pysozu.free_port()
    cluster = f"[clusters.dns.udp.health]\n{health}"
    proxy = pysozu.start(udp_config(port, [b.port for b in backends], cluster=cluster), workers=1)
    return proxy, port


def answered_by(port: int, count: int = 6) -> set[bytes]:
    """Which backends new flows reach: `count` new clients, one datagram each."""
    names = set()
    for n in range(count):
        with client() as sock:
            names.add(exchange(sock, port, b"q%d" % n).split(b":")[0])
    return names


def test_a_silent_udp_probe_takes_the_backend_out_and_a_reply_brings_it_back(
    pysozu: Any, make: Any
) -> None:
    b0, b1 = make("b0"), make("b1")
    proxy, port = start(pysozu, [b0, b1], UDP_PROBE + FAST)
    assert answered_by(port) == {b"b0", b"b1"}
    b0.answer_probes = False  # the data port still answers: only the probe finds it
    found = wait_metric(proxy, "udp.backend.health", lambda v: v == 1)
    assert found["udp.datagrams.in"] >= 6
    assert answered_by(port) == {b"b1"}
    assert b0.probes >= 3 and b1.probes >= 3  # both probed every second
    assert health_column(proxy) == {"b0": "unhealthy", "b1": "healthy"}
    assert unhealthy_in_status(proxy) == [1]
    b0.answer_probes = True
    wait_metric(proxy, "udp.backend.health", lambda v: v == 2)
    assert answered_by(port) == {b"b0", b"b1"}
    assert health_column(proxy) == {"b0": "healthy", "b1": "healthy"}
    assert unhealthy_in_status(proxy) == [0]


def health_column(proxy: Any) -> dict[str, str]:
    """`backend list -i dns`: backend id -> HEALTH; and its JSON agrees."""
    result = proxy.cli("backend", "list", "-i", "dns")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0][-1] == "HEALTH"
    shown = {line[1]: line[-1] for line in lines[1:]}
    raw = json.loads(proxy.cli("-j", "backend", "list", "-i", "dns").stdout)
    answers = raw["content"]["content_type"]["WORKER_RESPONSES"]["map"]
    verdicts = {
        entry["backend_id"]: entry["healthy"]
        for worker, answer in answers.items()
        if worker != "main"
        for entry in answer["content_type"]["CLUSTERS"]["vec"][0]["backend_health"]
    }
    assert {k: "healthy" if v else "unhealthy" for k, v in verdicts.items()} == shown
    return shown


def unhealthy_in_status(proxy: Any) -> list[int]:
    result = proxy.cli("-j", "status")
    assert result.returncode == 0, result.stderr
    workers = json.loads(result.stdout)["content"]["content_type"]["WORKERS"]["vec"]
    return [worker["unhealthy_backends"] for worker in workers]


def test_a_tcp_probe_follows_the_companion_tcp_port(pysozu: Any, make: Any) -> None:
    b0, b1 = make("b0"), make("b1")
    proxy, port = start(pysozu, [b0, b1], FAST)  # mode TCP_PROBE, tcp_port: the data port
    assert answered_by(port) == {b"b0", b"b1"}
    b1.close_tcp()  # connects refused: unhealthy after 2 probes
    wait_metric(proxy, "udp.backend.health", lambda v: v == 1)
    assert answered_by(port) == {b"b0"}
    b1.open_tcp()
    wait_metric(proxy, "udp.backend.health", lambda v: v == 2)
    assert answered_by(port) == {b"b0", b"b1"}


@pytest.mark.parametrize("fail_open", [True, False])
def test_every_backend_unhealthy_fails_open_unless_told_not_to(
    pysozu: Any, make: Any, fail_open: bool
) -> None:
    b0 = make("b0")
    health = UDP_PROBE + FAST
    proxy, port = start(pysozu, [b0], f"{health}fail_open = {str(fail_open).lower()}\n")
    assert answered_by(port, 1) == {b"b0"}
    b0.answer_probes = False
    wait_metric(proxy, "udp.backend.health", lambda v: v == 1)
    if fail_open:
        assert answered_by(port, 2) == {b"b0"}  # sozu's default: still forwarded
        return
    with client() as sock, pytest.raises(AssertionError, match="no answer"):
        exchange(sock, port, b"refused", tries=3)
    found = wait_metric(proxy, "udp.datagrams.dropped.no_backend", lambda v: v >= 1)
    assert found["udp.active_flows"] <= 1  # the first client's flow, until it idles out
