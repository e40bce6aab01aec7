"""TLS passthrough by SNI through a real `pysozu start` (docs/tls-passthrough.md): one HTTPS
port where `pass.example` reaches a TLS backend still encrypted (the client sees the
backend's own certificate) while other names, and clients without SNI, are terminated by
pysozu as usual. Certificates come from trustme."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from https_support import Pki, TlsClient, insecure_context, served_fingerprint

pytestmark = pytest.mark.timeout(90)


class TlsEcho:
    """A TLS server with its own certificate, echoing what each connection sends."""

    def __init__(self, cert: dict[str, str]) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert["certificate"], cert["key"])
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.names: list[str | None] = []
        self.context.sni_callback = lambda _sock, name, _ctx: self.names.append(name)  # type: ignore[assignment,func-returns-value]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(raw,), daemon=True).start()

    def _echo(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError), raw:
            raw.settimeout(30)
            with self.context.wrap_socket(raw, server_side=True) as tls:
                while data := tls.recv(65536):
                    tls.sendall(data)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def echo(pki: Pki) -> Iterator[tuple[TlsEcho, dict[str, str]]]:
    cert = pki.issue("pass.example", "x.wild.example")
    server = TlsEcho(cert)
    yield server, cert
    server.close()


def config(port: int, term: dict[str, str], app: int, tls_backend: int, listener: str = "") -> str:
    address = f"127.0.0.1:{port}"
    certificate = f'certificate = "{term["certificate"]}", key = "{term["key"]}"'
    return f"""
worker_count = 1

[[listeners]]
protocol = "https"
address = "{address}"
{listener}

[clusters.term]
protocol = "http"
frontends = [{{ address = "{address}", hostname = "term.example", {certificate} }}]
backends = [{{ address = "127.0.0.1:{app}", backend_id = "term-1" }}]

[clusters.pass]
protocol = "http"
frontends = [
  {{ address = "{address}", hostname = "pass.example", passthrough = true }},
  {{ address = "{address}", hostname = "*.wild.example", passthrough = true }},
]
backends = [{{ address = "127.0.0.1:{tls_backend}", backend_id = "pass-1" }}]
"""


def tls_connection(port: int, sni: str | None, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname=sni)


def roundtrip(sock: ssl.SSLSocket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "closed early"
        got += chunk
    return got


def metric(proxy: Any, name: str) -> int:
    """The sum of the counts named `name` anywhere in `metrics get`'s JSON."""
    result = proxy.cli("-j", "metrics", "get")
    assert result.returncode == 0, result.stderr
    total = 0

    def walk(node: Any) -> None:
        nonlocal total
        if isinstance(node, dict):
            for key, value in node.items():
                if key == name:
                    total += sum(v for v in _numbers(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(result.stdout))
    return total


def _numbers(node: Any) -> Iterator[int]:
    if isinstance(node, bool):
        return
    if isinstance(node, int):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)


def test_passthrough_and_termination_share_the_port(pysozu, backends, pki, echo) -> None:
    server, backend_cert = echo
    term = pki.issue("term.example")
    port = pysozu.free_port()
    proxy = pysozu.start(config(port, term, backends.start("app-term"), server.port), workers=1)
    context = pki.client_context()  # verifies chain and name: the backend's own certificate
    with tls_connection(port, "pass.example", context) as sock:
        assert served_fingerprint(sock) == backend_cert["fingerprint"]
        assert roundtrip(sock, b"ping through") == b"ping through"
    with tls_connection(port, "x.wild.example", context) as sock:  # the wildcard frontend
        assert served_fingerprint(sock) == backend_cert["fingerprint"]
        assert roundtrip(sock, b"wild") == b"wild"
    assert server.names == ["pass.example", "x.wild.example"]  # the SNI reached the backend
    with TlsClient(port, "term.example", context) as client:  # terminated by pysozu
        assert served_fingerprint(client.sock) == term["fingerprint"]
        response = client.get("term.example")
        assert (response.status, response.body) == (200, b"app-term")
    with TlsClient(port, None, insecure_context()) as client:  # no SNI: terminated too
        assert served_fingerprint(client.sock) != backend_cert["fingerprint"]
        assert client.get("term.example").status in (200, 421)
    with TlsClient(port, "y.other.example", insecure_context()) as client:  # another name
        assert served_fingerprint(client.sock) != backend_cert["fingerprint"]
    assert server.connections == 2
    assert metric(proxy, "tls.passthrough.connections") == 2


def start_proxy(
    pysozu: Any, backends: Any, pki: Pki, tls_backend: int, listener: str = ""
) -> tuple[Any, int]:
    """pysozu with `term.example` terminated and the passthrough names towards `tls_backend`."""
    port = pysozu.free_port()
    term = pki.issue("term.example")
    toml = config(port, term, backends.start("app-term"), tls_backend, listener)
    return pysozu.start(toml, workers=1), port


def test_a_large_transfer_both_ways(pysozu, backends, pki, echo) -> None:
    server, _ = echo
    _, port = start_proxy(pysozu, backends, pki, server.port)
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB each way
    # One thread sends and receives: an SSL object must not be used by two threads at once
    # (a sender thread beside recv() made OpenSSL see a false EOF now and then).
    with tls_connection(port, "pass.example", pki.client_context()) as sock:
        sock.setblocking(False)
        sent, received = 0, bytearray()
        deadline = time.monotonic() + 60
        while len(received) < len(payload):
            assert time.monotonic() < deadline, f"{sent} bytes sent, {len(received)} received"
            writing = [sock] if sent < len(payload) else []
            readable, writable, _ = select.select([sock], writing, [], 1.0)
            if writable:
                with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    sent += sock.send(payload[sent : sent + 65536])
            while readable or sock.pending():
                readable = []
                try:
                    chunk = sock.recv(1 << 17)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                assert chunk, f"closed after {len(received)} bytes"
                received += chunk
    assert received == payload


def test_a_client_hello_in_pieces_is_still_routed(pysozu, backends, pki, echo) -> None:
    server, backend_cert = echo
    _, port = start_proxy(pysozu, backends, pki, server.port)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="pass.example")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        for start in range(0, len(hello), 97):  # TCP segments, with pauses between them
            raw.sendall(hello[start : start + 97])
            time.sleep(0.01)
        while True:  # finish the handshake over the socket
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                data = raw.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        raw.sendall(outgoing.read())
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert ssl.DER_cert_to_PEM_cert(der) == Path(backend_cert["certificate"]).read_text()


def test_a_backend_down_closes_the_connection_and_is_counted(pysozu, backends, pki) -> None:
    proxy, port = start_proxy(pysozu, backends, pki, pysozu.free_port())  # nothing listens
    for _ in range(2):
        with (
            pytest.raises((ssl.SSLError, OSError)),
            tls_connection(port, "pass.example", pki.client_context()) as sock,
        ):
            sock.recv(1)
    assert metric(proxy, "tcp.errors.no_backend") == 2
    assert proxy.process.poll() is None


def test_behind_a_proxy_protocol_listener(pysozu, backends, pki, echo) -> None:
    server, backend_cert = echo
    _, port = start_proxy(pysozu, backends, pki, server.port, "expect_proxy = true")
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 443\r\n")
    with pki.client_context().wrap_socket(raw, server_hostname="pass.example") as sock:
        assert served_fingerprint(sock) == backend_cert["fingerprint"]
        assert roundtrip(sock, b"proxied") == b"proxied"


def test_a_silent_client_is_closed_at_the_front_timeout(pysozu, backends, pki, echo) -> None:
    server, _ = echo
    _, port = start_proxy(pysozu, backends, pki, server.port, "front_timeout = 1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01")  # the start of a record, then nothing
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # closed, peeked bytes unread: a reset
            assert raw.recv(10) == b""
        assert time.monotonic() - started < 8
    assert server.connections == 0


def test_frontends_removed_and_added_at_run_time_through_the_cli(
    pysozu, backends, pki, echo
) -> None:
    server, backend_cert = echo
    proxy, port = start_proxy(pysozu, backends, pki, server.port)
    address = f"127.0.0.1:{port}"
    for hostname in ("pass.example", "*.wild.example"):
        argv = ("frontend", "https", "remove", "-a", address, "--hostname", hostname, "id", "pass")
        result = proxy.cli(*argv)
        assert result.returncode == 0, result.stderr
    with tls_connection(port, "pass.example", insecure_context()) as sock:  # terminated now
        assert served_fingerprint(sock) != backend_cert["fingerprint"]
    result = proxy.cli(
        "frontend", "https", "add", "-a", address, "--hostname", "pass.example",
        "--passthrough", "id", "pass",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with tls_connection(port, "pass.example", pki.client_context()) as sock:
        assert served_fingerprint(sock) == backend_cert["fingerprint"]
        assert roundtrip(sock, b"back") == b"back"
    listed = proxy.cli("-j", "frontend", "list", "--https")
    assert listed.returncode == 0, listed.stderr
    fronts = list(_dicts(json.loads(listed.stdout)))
    assert [f["passthrough"] for f in fronts if f.get("hostname") == "pass.example"] == [True]
    assert [f.get("passthrough") for f in fronts if f.get("hostname") == "term.example"] in (
        [False],
        [None],
    )


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dicts(item)
