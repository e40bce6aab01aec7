"""PROXY protocol on HTTP and HTTPS listeners (`expect_proxy`), from the outside.

Raw bytes through a real worker: v2 (sozu's) and v1 (a pysozu extension) headers, whole, in
pieces and byte by byte; the source they carry is the client address everywhere (forwarding
headers, `trusted_proxies`, the per-IP limit, access logs); LOCAL headers use the real peer; a
missing, malformed, oversized, cut or slow header closes the connection before anything
reaches a backend, and is counted. Then HAProxy as a real sender (`send-proxy-v2`,
`send-proxy`, and its `check-send-proxy` health checks), over IPv4 and IPv6.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_support import Backend, Client, Seen, get, read_head, running_worker
from https_support import Pki, https_config

from dataplane.command.messages import QueryMetricsOptions, Request
from dataplane.command.responses import ResponseStatus
from dataplane.proxy.proxy_protocol.header import v2_header

pytestmark = pytest.mark.timeout(60)

HAPROXY_LIFETIME = 90  # seconds, at most: longer than the test's own timeout
CLIENT = ("203.0.113.7", 4242)
LB_SIDE = ("10.0.0.1", 80)
CLAIMS = "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"


def echo_head(seen: Seen, conn: socket.socket) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.head), seen.head)


def v1_header(source: tuple[str, int], destination: tuple[str, int] = LB_SIDE) -> bytes:
    proto = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {proto} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def connect(port: int, *pieces: bytes, pause: float = 0.0) -> Client:
    """A client that sends `pieces` (a PROXY header, often), `pause` seconds apart."""
    client = Client(port)
    for piece in pieces:
        client.send(piece)
        if pause:
            time.sleep(pause)
    return client


def seen_by_backend(client: Client, extra: str = "") -> Seen:
    status, _, body = client.roundtrip(get("example.com", extra=extra))
    assert status == 200, body
    return Seen(body, b"")


def closed_without_answer(client: Client, timeout: float = 5.0) -> bool:
    """True when the proxy closes the connection having sent nothing at all."""
    client.sock.settimeout(timeout)
    try:
        return client.sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def counters(worker: Any) -> dict[str, int]:
    answer = worker.call(Request.of(query_metrics=QueryMetricsOptions()))
    assert answer.status == ResponseStatus.OK
    proxy = answer.content.value.proxy
    return {
        name.removeprefix("proxy_protocol."): value.inner.count
        for name, value in proxy.items()
        if name.startswith("proxy_protocol.")
    }


@contextlib.contextmanager
def proxied_worker(backend: Backend, **listener: object) -> Iterator[tuple[Any, int]]:
    with running_worker(
        {"a": ("example.com", [backend.port])}, expect_proxy=True, **listener
    ) as running:
        yield running


# -- the client address is the header's --------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("source", [CLIENT, ("2001:db8::7", 4242)])
def test_the_source_is_the_client_address_in_every_forwarding_header(
    version: int, source: tuple[str, int]
) -> None:
    backend = Backend(echo_head)
    with proxied_worker(backend, send_x_real_ip=True) as (worker, port):
        destination = ("2001:db8::1", 443) if ":" in source[0] else LB_SIDE
        header = v1_header(source, destination) if version == 1 else v2_header(source, destination)
        client = connect(port, header)
        for _ in range(2):  # and again on the kept-alive connection: one header per connection
            seen = seen_by_backend(client, CLAIMS)
            literal = f"[{source[0]}]" if ":" in source[0] else source[0]
            assert seen.header("X-Forwarded-For") == [source[0]]  # the client's claim dropped
            assert seen.header("X-Real-IP") == [source[0]]
            # The address the client connected to (the load balancer's) is the public one.
            by = f'"[{destination[0]}]"' if ":" in destination[0] else destination[0]
            assert seen.header("Forwarded") == [f'proto=http;for="{literal}:{source[1]}";by={by}']
            assert seen.header("X-Forwarded-Port") == [str(destination[1])]
        assert counters(worker) == {
            "headers": 1,
            "local": 0,
            "errors": 0,
            "timeouts": 0,
            "empty": 0,
        }


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(lambda h, r: [h, r], id="header-then-request"),
        pytest.param(lambda h, r: [h + r], id="one-segment"),
        pytest.param(lambda h, r: [h[:5], h[5:14], h[14:] + r[:3], r[3:]], id="cut-anywhere"),
        pytest.param(lambda h, r: [h[i : i + 1] for i in range(len(h))] + [r], id="byte-by-byte"),
    ],
)
@pytest.mark.parametrize("version", [1, 2])
def test_a_header_in_pieces_and_the_request_behind_it(pieces: Any, version: int) -> None:
    backend = Backend(echo_head)
    header = (
        v1_header(CLIENT) if version == 1 else v2_header(CLIENT, LB_SIDE, tlvs=b"\xe0\x00\x02ab")
    )
    with proxied_worker(backend) as (_worker, port):
        client = connect(port, *pieces(header, get("example.com")), pause=0.01)
        status, _, body = client.response()
        assert status == 200
        assert Seen(body, b"").header("X-Forwarded-For") == [CLIENT[0]]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(v2_header(("6.6.6.6", 1), LB_SIDE, local=True), id="v2-local-forged-block"),
        pytest.param(v2_header(None, tlvs=b"\x04\x00\x00"), id="v2-proxy-unspec"),
        pytest.param(b"PROXY UNKNOWN\r\n", id="v1-unknown"),
    ],
)
def test_headers_without_an_address_use_the_real_peer(header: bytes) -> None:
    """LOCAL is the load balancer's own connection (its health checks): the peer it is."""
    backend = Backend(echo_head)
    with proxied_worker(backend) as (worker, port):
        client = connect(port, header)
        peer_port = client.sock.getsockname()[1]
        seen = seen_by_backend(client)
        assert seen.header("X-Forwarded-For") == ["127.0.0.1"]
        assert seen.header("Forwarded") == [f'proto=http;for="127.0.0.1:{peer_port}";by=127.0.0.1']
        assert seen.header("X-Forwarded-Port") == [str(port)]  # the listener's own
        assert counters(worker)["local"] == 1


# -- trust: the header's source is the one checked -------------------------------------------


def test_trusted_proxies_are_checked_against_the_source_not_the_load_balancer() -> None:
    backend = Backend(echo_head)
    with proxied_worker(backend, trusted_proxies=["127.0.0.1", "198.51.100.0/24"]) as (_w, port):
        # The load balancer (127.0.0.1) is listed, but speaks PROXY: it adds no headers, so a
        # client behind it claiming an address is not believed.
        untrusted = seen_by_backend(connect(port, v2_header(CLIENT, LB_SIDE)), CLAIMS)
        assert untrusted.header("X-Forwarded-For") == [CLIENT[0]]
        assert untrusted.header("X-Forwarded-Proto") == ["http"]
        # A source in trusted_proxies (a proxy in front of the load balancer) is believed.
        trusted = seen_by_backend(connect(port, v1_header(("198.51.100.9", 7))), CLAIMS)
        assert trusted.header("X-Forwarded-For") == ["6.6.6.6, 198.51.100.9"]
        assert trusted.header("X-Forwarded-Proto") == ["https"]
        # A LOCAL connection is the load balancer's own: its address decides.
        local = seen_by_backend(connect(port, v2_header(None, local=True)), CLAIMS)
        assert local.header("X-Forwarded-For") == ["6.6.6.6, 127.0.0.1"]


def test_the_per_ip_limit_counts_the_source() -> None:
    backend = Backend(echo_head)
    with running_worker(
        {"a": ("example.com", [backend.port])},
        cluster_options={"max_connections_per_ip": 1},
        expect_proxy=True,
    ) as (_worker, port):
        held = connect(port, v2_header(CLIENT, LB_SIDE))
        assert held.roundtrip(get("example.com"))[0] == 200
        same = connect(port, v1_header((CLIENT[0], 5555)))
        assert same.roundtrip(get("example.com"))[0] == 429
        other = connect(port, v2_header(("203.0.113.8", 4242), LB_SIDE))
        assert other.roundtrip(get("example.com"))[0] == 200  # all from 127.0.0.1 in truth


# -- refused: nothing reaches a backend --------------------------------------------------------

REFUSED = {
    "missing": get("example.com"),
    "missing-tls": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    "v2-bad-command": v2_header(CLIENT, LB_SIDE)[:12] + b"\x22" + v2_header(CLIENT, LB_SIDE)[13:],
    "v2-bad-family": v2_header(CLIENT, LB_SIDE, family=0x41),
    "v2-short-block": v2_header(None, family=0x11, tlvs=b"\x00" * 4),
    "v2-oversized": v2_header(CLIENT, LB_SIDE, tlvs=b"\x04" * 1000),
    "v1-bad-address": b"PROXY TCP4 203.0.113.256 10.0.0.1 1 2\r\n",
    "v1-injection": b"PROXY TCP4 1.2.3.4\r\nX-Forwarded-For: 1.2.3.4\r\n",
    "v1-too-long": b"PROXY UNKNOWN " + b"x" * 200,
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_header_closes_the_connection_and_is_counted(raw: bytes) -> None:
    backend = Backend(echo_head)
    with proxied_worker(backend) as (worker, port):
        client = connect(port, raw + get("example.com"))
        assert closed_without_answer(client)
        assert counters(worker)["errors"] == 1
        fine = connect(port, v2_header(CLIENT, LB_SIDE))  # the listener serves on
        assert seen_by_backend(fine).header("X-Forwarded-For") == [CLIENT[0]]
    assert len(backend.seen) == 1


def test_a_header_cut_short_or_nothing_at_all() -> None:
    backend = Backend(echo_head)
    with proxied_worker(backend) as (worker, port):
        cut = connect(port, v2_header(CLIENT, LB_SIDE)[:20])
        cut.sock.shutdown(socket.SHUT_WR)
        assert closed_without_answer(cut)
        silent = Client(port)  # a load balancer's TCP check: connect, close
        silent.sock.shutdown(socket.SHUT_WR)
        assert closed_without_answer(silent)
        figures = counters(worker)
        assert (figures["errors"], figures["empty"]) == (1, 1)
    assert backend.seen == []


@pytest.mark.parametrize("sent", [b"", v2_header(CLIENT, LB_SIDE)[:15], b"PROXY TCP4 1.2"])
def test_a_slow_header_is_closed_at_the_request_timeout(sent: bytes) -> None:
    backend = Backend(echo_head)
    with proxied_worker(backend, request_timeout=1) as (worker, port):
        started = time.monotonic()
        client = connect(port, sent) if sent else Client(port)
        assert closed_without_answer(client, timeout=5)
        assert 0.9 <= time.monotonic() - started < 4.5
        assert counters(worker)["timeouts"] == 1
    assert backend.seen == []


# -- HTTPS: the header comes before the TLS handshake ----------------------------------------


def test_https_reads_the_header_before_the_handshake(pysozu: Any, tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert = pki.issue("a.example")
    backend = Backend(echo_head)
    port = pysozu.free_port()
    toml = https_config(port, {"a": ("a.example", backend.port, cert)}, "expect_proxy = true")
    proxy = pysozu.start(toml, workers=1)
    for header in (
        v2_header(CLIENT, LB_SIDE),
        v1_header(("2001:db8::7", 4242), ("2001:db8::1", 443)),
    ):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(header)
        with pki.client_context().wrap_socket(raw, server_hostname="a.example") as tls:
            tls.sendall(get("a.example", extra=CLAIMS))
            head = read_head(tls, bytearray())
        assert head is not None and head.startswith(b"HTTP/1.1 200 ")
    first, second = (Seen(seen.head, b"") for seen in backend.seen)
    assert first.header("Forwarded") == ['proto=https;for="203.0.113.7:4242";by=10.0.0.1']
    assert first.header("X-Forwarded-For") == [CLIENT[0]]
    assert first.header("X-Forwarded-Port") == ["80"]
    assert second.header("Forwarded") == ['proto=https;for="[2001:db8::7]:4242";by="[2001:db8::1]"']
    assert second.header("X-Forwarded-Port") == ["443"]
    # A TLS client without a header is refused before any handshake.
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        pki.client_context().wrap_socket(raw, server_hostname="a.example").close()
    assert len(backend.seen) == 2
    assert "expect_proxy" not in proxy.log()  # no warning left


# -- the whole product: TOML key, CLI flags, access logs --------------------------------------


def test_toml_cli_and_access_logs(pysozu: Any, tmp_path: Path) -> None:
    backend = Backend(echo_head)
    port = pysozu.free_port()
    access_log = tmp_path / "access.log"
    toml = f'access_logs_target = "file://{access_log}"\n' + pysozu.http_config(
        port, {"a": ("example.com", [backend.port])}
    ).replace(
        f'address = "127.0.0.1:{port}"\n', f'address = "127.0.0.1:{port}"\nexpect_proxy = true\n', 1
    )
    proxy = pysozu.start(toml, workers=1)
    assert seen_by_backend(connect(port, v2_header(CLIENT, LB_SIDE))).header("X-Forwarded-For") == [
        CLIENT[0]
    ]
    assert closed_without_answer(connect(port, get("example.com")))
    deadline = time.monotonic() + 5
    while "203.0.113.7:4242" not in (access_log.read_text() if access_log.exists() else ""):
        assert time.monotonic() < deadline, "the access log never named the PROXY source"
        time.sleep(0.05)
    assert "expect_proxy" not in proxy.log()  # no warning left
    metrics = proxy.cli("metrics", "get")
    assert metrics.returncode == 0, metrics.stderr
    assert re.search(r"^proxy_protocol\.errors +1$", metrics.stdout, re.M), metrics.stdout
    assert re.search(r"^proxy_protocol\.headers +1$", metrics.stdout, re.M), metrics.stdout

    address = f"127.0.0.1:{port}"
    result = proxy.cli("listener", "http", "update", "-a", address, "--no-expect-proxy")
    assert result.returncode == 0, result.stderr
    assert seen_by_backend(Client(port)).header("X-Forwarded-For") == ["127.0.0.1"]
    result = proxy.cli("listener", "http", "update", "-a", address, "--expect-proxy")
    assert result.returncode == 0, result.stderr
    assert closed_without_answer(connect(port, get("example.com")))
    assert seen_by_backend(connect(port, v1_header(CLIENT))).header("X-Forwarded-For") == [
        CLIENT[0]
    ]


# -- HAProxy as the sender ------------------------------------------------------------------


@contextlib.contextmanager
def haproxy(tmp_path: Path, target: int, send: str) -> Iterator[tuple[int, int]]:
    """HAProxy in TCP mode on 127.0.0.1 and [::1], sending PROXY headers to 127.0.0.1:target
    (`send`: its server options), health-checking it through pysozu; (IPv4 port, IPv6 port)."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/test installs it)")
    v4, v6 = free_port(socket.AF_INET), free_port(socket.AF_INET6)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n"
        "  timeout server 10s\n  timeout check 2s\n"
        f"frontend edge\n  bind 127.0.0.1:{v4}\n  bind [::1]:{v6}\n  default_backend pysozu\n"
        "backend pysozu\n  option httpchk\n"
        "  http-check send meth GET uri /health ver HTTP/1.1 hdr Host example.com\n"
        f"  server s 127.0.0.1:{target} {send} check inter 300 check-send-proxy\n"
    )
    log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115
    # `timeout` bounds its life even if this test process dies without cleaning up; it
    # passes on the SIGTERM below.
    command = ["timeout", str(HAPROXY_LIFETIME), "haproxy", "-f", str(config), "-db"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", v4), 1):
                break
            assert process.poll() is None, (tmp_path / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)
        yield v4, v6
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class EdgeClient(Client):
    """A client of HAProxy's frontend, on IPv4 or IPv6."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.pending = bytearray()


def free_port(family: int) -> int:
    with socket.socket(family) as sock:
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_haproxy_as_the_sender(tmp_path: Path, send: str) -> None:
    backend = Backend(echo_head)
    with proxied_worker(backend) as (worker, port), haproxy(tmp_path, port, send) as (v4, v6):
        for host, edge in (("127.0.0.1", v4), ("::1", v6)):
            client = EdgeClient(host, edge)
            own_port = client.sock.getsockname()[1]  # the port HAProxy saw, not pysozu
            seen = seen_by_backend(client, CLAIMS)
            literal = f"[{host}]" if ":" in host else host
            assert seen.header("X-Forwarded-For") == [host]
            by = f'"{literal}"' if ":" in host else host  # HAProxy's frontend, as destination
            assert seen.header("Forwarded") == [f'proto=http;for="{literal}:{own_port}";by={by}']
            assert seen.header("X-Forwarded-Port") == [str(edge)]
            client.close()
        # Its health checks (LOCAL headers with v2) went through pysozu to the backend.
        deadline = time.monotonic() + 5
        while not any(s.head.startswith(b"GET /health ") for s in backend.seen):
            assert time.monotonic() < deadline, "no health check went through"
            time.sleep(0.05)
        figures = counters(worker)
        assert figures["errors"] == figures["timeouts"] == 0
        assert figures["headers"] >= 3
        if send == "send-proxy-v2":
            assert figures["local"] >= 1
