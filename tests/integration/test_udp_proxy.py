"""UDP proxying, black-box: a real pysozu, UDP echo backends in this process, raw UDP clients.

sozu's udp_tests scenarios: forward and return, round robin, `responses` teardown, `requests`
cap, oversize dropped, PROXY v2 to the backend, hot add/remove of a listener, a refusing
backend left for another one, upgrade fd hand-off, SOURCE_IP_PORT affinity; plus flow idle
timeout, max_flows eviction, a one-way stream, reload and metrics.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.proxy.proxy_protocol.header import ProxyProtocolError, parse_header

pytestmark = pytest.mark.timeout(120)


class UdpEcho:
    """A UDP backend answering `<name>:<datagram>`, recording what it received and from
    which source address; `proxied` parses a PROXY v2 header off each datagram first."""

    def __init__(self, name: str, proxied: bool = False) -> None:
        self.name = name.encode()
        self.proxied = proxied
        self.received: list[bytes] = []
        self.sources: set[tuple[str, int]] = set()
        self.headers: list[tuple[str, int] | None] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65535)
            except OSError:
                return
            if self.proxied:
                try:
                    header = parse_header(data)
                except ProxyProtocolError:
                    header = None
                if header is None:
                    self.headers.append(None)
                else:
                    self.headers.append(header.source)
                    data = data[header.length :]
            self.received.append(data)
            self.sources.add(source)
            if data.startswith(b"silent"):
                continue
            try:
                self.sock.sendto(self.name + b":" + data, source)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def udp_echo() -> Iterator[list[UdpEcho]]:
    servers: list[UdpEcho] = []
    yield servers
    for server in servers:
        server.close()


def udp_config(
    port: int,
    backends: list[int],
    listener: str = "",
    cluster: str = "",
    extra: str = "",
    algorithm: str = "ROUND_ROBIN",
) -> str:
    entries = ", ".join(
        f'{{ address = "127.0.0.1:{p}", backend_id = "b{n}" }}' for n, p in enumerate(backends)
    )
    return (
        f'worker_count = 1\n{extra}\n[[listeners]]\nprotocol = "udp"\n'
        f'address = "127.0.0.1:{port}"\n{listener}\n'
        f'[clusters.dns]\nprotocol = "tcp"\nload_balancing = "{algorithm}"\n'
        f'frontends = [{{ address = "127.0.0.1:{port}" }}]\nbackends = [{entries}]\n{cluster}\n'
    )


def start(
    pysozu: Any, udp_echo: list[UdpEcho], count: int = 1, proxied: bool = False, **kw: Any
) -> tuple[Any, int]:
    for n in range(count):
        udp_echo.append(UdpEcho(f"b{n}", proxied=proxied))
    port = pysozu.free_port()
    proxy = pysozu.start(udp_config(port, [s.port for s in udp_echo], **kw), workers=1)
    return proxy, port


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


def exchange(sock: socket.socket, port: int, payload: bytes, tries: int = 20) -> bytes:
    """Send until an answer comes (the listener may still be opening at first)."""
    sock.settimeout(0.5)
    for _ in range(tries):
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            continue
        assert source == ("127.0.0.1", port)  # replies come from the listener's address
        return data
    raise AssertionError(f"no answer to {payload!r} from 127.0.0.1:{port}")


def metrics(proxy: Any) -> dict[str, Any]:
    result = proxy.cli("-j", "metrics", "get")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.startswith("udp.") and isinstance(value, dict):
                    inner = value.get("inner", value)
                    number = inner.get("COUNT", inner.get("GAUGE"))
                    if isinstance(number, int):
                        found[key] = found.get(key, 0) + number
                        continue
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(result.stdout))
    return found


def flow_duration(proxy: Any) -> dict[str, Any]:
    """The `udp.flow.duration` histogram of the only worker (sum in microseconds)."""
    result = proxy.cli("-j", "metrics", "get")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    start = text.index('"udp.flow.duration"')
    found, _ = json.JSONDecoder().raw_decode(text, text.index("{", start))
    inner = found.get("inner", found)
    return dict(inner["HISTOGRAM"] if "HISTOGRAM" in inner else inner["histogram"])


def wait_metric(proxy: Any, name: str, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = metrics(proxy)
        if predicate(found.get(name, 0)):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} = {found.get(name)} in {found}")
        time.sleep(0.3)


def test_a_dns_like_exchange_goes_to_the_backend_and_back(
    pysozu: Any, udp_echo: list[UdpEcho]
) -> None:
    proxy, port = start(pysozu, udp_echo)
    with client() as sock:
        assert exchange(sock, port, b"query-1") == b"b0:query-1"
        sock.sendto(b"query-2", ("127.0.0.1", port))
        assert sock.recvfrom(100)[0] == b"b0:query-2"
    assert udp_echo[0].received[-2:] == [b"query-1", b"query-2"]
    found = wait_metric(proxy, "udp.datagrams.out", lambda v: v >= 2)
    assert found["udp.datagrams.in"] >= 2
    assert found["udp.flows.created"] == 1  # both datagrams of the client: one flow
    assert found["udp.active_flows"] == 1


def test_flows_are_spread_round_robin_and_each_stays_on_its_backend(
    pysozu: Any, udp_echo: list[UdpEcho]
) -> None:
    _, port = start(pysozu, udp_echo, count=2)
    clients = [client() for _ in range(4)]
    try:
        first = [exchange(sock, port, b"hi").split(b":")[0] for sock in clients]
        assert sorted(first) == [b"b0", b"b0", b"b1", b"b1"]
        for sock, name in zip(clients, first, strict=True):
            for _ in range(3):  # the same client keeps its backend
                sock.sendto(b"again", ("127.0.0.1", port))
                assert sock.recvfrom(100)[0] == name + b":again"
    finally:
        for sock in clients:
            sock.close()


def test_a_one_way_stream_arrives_whole(pysozu: Any, udp_echo: list[UdpEcho]) -> None:
    proxy, port = start(pysozu, udp_echo)
    with client() as sock:
        assert exchange(sock, port, b"start").startswith(b"b0:")
        for n in range(200):
            sock.sendto(b"silent-%d" % n, ("127.0.0.1", port))
            if n % 20 == 19:
                time.sleep(0.01)  # loopback drops nothing at this rate
        deadline = time.monotonic() + 10
        while len(udp_echo[0].received) < 201 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert udp_echo[0].received[1:] == [b"silent-%d" % n for n in range(200)]
    assert len(udp_echo[0].sources) == 1  # one flow, one source socket
    wait_metric(proxy, "udp.datagrams.in", lambda v: v >= 201)


def test_responses_ends_each_flow_after_its_answer(pysozu: Any, udp_echo: list[UdpEcho]) -> None:
    proxy, port = start(pysozu, udp_echo, cluster="[clusters.dns.udp]\nresponses = 1\n")
    with client() as sock:
        for n in range(3):
            assert exchange(sock, port, b"q%d" % n) == b"b0:q%d" % n
    found = wait_metric(proxy, "udp.flows.created", lambda v: v == 3)
    assert found["udp.active_flows"] == 0
    assert len(udp_echo[0].sources) == 3  # a new flow socket for each exchange


def test_requests_caps_the_datagrams_of_a_flow(pysozu: Any, udp_echo: list[UdpEcho]) -> None:
    proxy, port = start(pysozu, udp_echo, cluster="[clusters.dns.udp]\nrequests = 2\n")
    with client() as sock:
        for n in range(4):
            assert exchange(sock, port, b"q%d" % n) == b"b0:q%d" % n
    found = wait_metric(proxy, "udp.flows.created", lambda v: v == 2)
    assert found["udp.active_flows"] == 1


def test_an_oversized_datagram_is_dropped_and_counted(pysozu: Any, udp_echo: list[UdpEcho]) -> None:
    proxy, port = start(pysozu, udp_echo, listener="max_rx_datagram_size = 100")
    with client() as sock:
        assert exchange(sock, port, b"x" * 100) == b"b0:" + b"x" * 100
        sock.sendto(b"y" * 101, ("127.0.0.1", port))
        assert exchange(sock, port, b"small") == b"b0:small"
    assert b"y" * 101 not in udp_echo[0].received
    found = wait_metric(proxy, "udp.datagrams.dropped.truncated", lambda v: v == 1)
    assert found["udp.datagrams.dropped"] >= 1


def test_the_flow_table_is_bounded_and_evicts_the_oldest(
    pysozu: Any, udp_echo: list[UdpEcho]
) -> None:
    proxy, port = start(pysozu, udp_echo, listener="max_flows = 2")
    clients = [client() for _ in range(3)]
    try:
        for sock in clients:
            assert exchange(sock, port, b"hello") == b"b0:hello"
        found = wait_metric(proxy, "udp.flows.evicted.max_flows", lambda v: v == 1)
        assert found["udp.active_flows"] == 2 and found["udp.flows.evicted"] == 1
        assert exchange(clients[0], port, b"back") == b"b0:back"  # a new flow for it
        found = wait_metric(proxy, "udp.flows.evicted.max_flows", lambda v: v == 2)
        # sozu's meaning: created - evicted (every flow closed) = active
        assert found["udp.flows.created"] == 4 and found["udp.flows.evicted"] == 2
        assert found["udp.flows.shed"] == 0
    finally:
        for sock in clients:
            sock.close()


def test_idle_flows_expire_after_the_timeouts(pysozu: Any, udp_echo: list[UdpEcho]) -> None:
    proxy, port = start(pysozu, udp_echo, listener="front_timeout = 1\nback_timeout = 1")
    with client() as sock:
        assert exchange(sock, port, b"one") == b"b0:one"
        found = wait_metric(proxy, "udp.flows.evicted", lambda v: v == 1, timeout=10)
        assert found["udp.active_flows"] == 0
        duration = flow_duration(proxy)  # sozu's udp.flow.duration, recorded at close
        assert duration["count"] == 1 and 1_000_000 <= duration["sum"] <= 4_000_000
        assert exchange(sock, port, b"two") == b"b0:two"  # a new flow, same backend
    assert len(udp_echo[0].sources) == 2


def test_source_ip_port_affinity_keeps_each_client_on_one_backend(
    pysozu: Any, udp_echo: list[UdpEcho]
) -> None:
    _, port = start(
        pysozu,
        udp_echo,
        count=3,
        algorithm="MAGLEV",
        cluster='[clusters.dns.udp]\naffinity_key = "SOURCE_IP_PORT"\nresponses = 1\n',
    )
    clients = [client() for _ in range(10)]
    used = set()
    try:
        for sock in clients:
            names = {exchange(sock, port, b"q%d" % n).split(b":")[0] for n in range(3)}
            assert len(names) == 1  # a new flow each time (responses = 1), the same backend
            used |= names
        assert len(used) > 1  # keyed on the port too: one IP's clients spread out
    finally:
        for sock in clients:
            sock.close()


def test_send_proxy_protocol_puts_a_v2_header_on_the_first_datagram(
    pysozu: Any, udp_echo: list[UdpEcho]
) -> None:
    _, port = start(
        pysozu, udp_echo, proxied=True, cluster="[clusters.dns.udp]\nsend_proxy_protocol = true\n"
    )
    with client() as sock:
        source = sock.getsockname()
        assert exchange(sock, port, b"one") == b"b0:one"
        sock.sendto(b"two", ("127.0.0.1", port))
        assert sock.recvfrom(100)[0] == b"b0:two"
    assert udp_echo[0].headers[0] == source  # the client's address, not the proxy's
    assert udp_echo[0].headers[-1] is None  # only the first datagram carries one
    assert udp_echo[0].received[-2:] == [b"one", b"two"]


def test_a_refusing_backend_is_left_for_another(pysozu: Any, udp_echo: list[UdpEcho]) -> None:
    live = UdpEcho("live")
    udp_echo.append(live)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: the kernel answers ICMP port unreachable
    port = pysozu.free_port()
    pysozu.start(udp_config(port, [dead_port, live.port]), workers=1)
    answers = []
    for _ in range(4):
        with client() as sock:
            answers.append(exchange(sock, port, b"q", tries=40))
    assert set(answers) == {b"live:q"}


def test_udp_listener_and_frontend_added_and_removed_through_the_cli(
    pysozu: Any, udp_echo: list[UdpEcho]
) -> None:
    backend = UdpEcho("cli")
    udp_echo.append(backend)
    proxy = pysozu.start("worker_count = 1\n", workers=1)
    port = pysozu.free_port()
    address = f"127.0.0.1:{port}"
    public = f"10.0.0.1:{port}"
    for argv in (
        ("listener", "udp", "add", "-a", address, "--max-flows", "10", "--public-address", public),
        ("listener", "udp", "update", "-a", address, "--front-timeout", "20"),
        ("cluster", "add", "-i", "dns", "--load-balancing-policy", "round_robin"),
        ("frontend", "udp", "add", "-i", "dns", "-a", address, "--tags", "team=dns"),
        ("backend", "add", "-i", "dns", "--backend-id", "b0", "-a", f"127.0.0.1:{backend.port}"),
        ("listener", "udp", "activate", "-a", address),
    ):
        result = proxy.cli(*argv)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
    with client() as sock:
        assert exchange(sock, port, b"ping") == b"cli:ping"
    listed = json.loads(proxy.cli("-j", "listener", "list").stdout)
    text = json.dumps(listed)
    assert '"V4": 167772161' in text  # 10.0.0.1, the public address
    assert '"max_flows": 10' in text and '"front_timeout": 20' in text
    # update: the datagram bound and the timeouts reach the worker
    for argv in (
        ("listener", "udp", "update", "-a", address, "--max-rx-datagram-size", "10"),
        ("listener", "udp", "update", "-a", address, "--max-flows", "1"),
        ("listener", "udp", "update", "-a", address, "--back-timeout", "1"),
        ("listener", "udp", "update", "-a", address, "--front-timeout", "1"),
        ("listener", "udp", "update", "-a", address, "--public-address", address),
    ):
        result = proxy.cli(*argv)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
    with client() as sock, client() as other:
        assert exchange(sock, port, b"short") == b"cli:short"
        sock.sendto(b"much too long", ("127.0.0.1", port))
        assert exchange(other, port, b"other") == b"cli:other"  # max_flows 1: evicts sock's
        found = wait_metric(proxy, "udp.datagrams.dropped.truncated", lambda v: v == 1)
        assert found["udp.flows.evicted"] >= 1  # (the first client's flow may be too)
        wait_metric(proxy, "udp.active_flows", lambda v: v == 0)  # 1 s idle both ways
    assert b"much too long" not in backend.received
    for argv in (
        ("listener", "udp", "deactivate", "-a", address),
        ("frontend", "udp", "remove", "-i", "dns", "-a", address),
        ("listener", "udp", "remove", "-a", address),
    ):
        result = proxy.cli(*argv)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
    with client() as sock:
        sock.settimeout(0.5)
        sock.sendto(b"gone", ("127.0.0.1", port))
        with pytest.raises(OSError):  # refused (ICMP) or no answer: nobody serves it
            sock.recvfrom(100)
    assert b"gone" not in backend.received


def test_reload_moves_the_udp_cluster_to_another_backend(
    pysozu: Any, udp_echo: list[UdpEcho]
) -> None:
    first, second = UdpEcho("first"), UdpEcho("second")
    udp_echo.extend([first, second])
    port = pysozu.free_port()
    proxy = pysozu.start(udp_config(port, [first.port]), workers=1)
    with client() as sock:
        assert exchange(sock, port, b"q") == b"first:q"
        text = proxy.config_path.read_text().replace(str(first.port), str(second.port))
        proxy.config_path.write_text(text)
        result = proxy.cli("reload")
        assert result.returncode == 0, result.stderr
        # the flow pinned to the removed backend closed: the same client moves over
        assert exchange(sock, port, b"q") == b"second:q"


def test_worker_upgrade_hands_the_udp_socket_over(pysozu: Any, udp_echo: list[UdpEcho]) -> None:
    proxy, port = start(pysozu, udp_echo)
    with client() as sock:
        assert exchange(sock, port, b"before") == b"b0:before"
    result = proxy.cli("upgrade", timeout=90)
    assert result.returncode == 0, result.stderr
    with client() as sock:
        assert exchange(sock, port, b"after") == b"b0:after"
