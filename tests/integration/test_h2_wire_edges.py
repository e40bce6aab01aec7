"""HTTP/2 at the edges of a running pysozu: PROXY v2 before TLS, X-Real-IP, HTTP/1.1 and h2
on one TLS listener, and an h2c backend that never acknowledges our SETTINGS.

Ports sozu's `test_h2_*proxy*`, `test_x_real_ip_*` (+ the H2 trailer elision), the mixed
H1+H2 listener and `test_h2_settings_ack_timeout` (mapping: docs/testing-h2.md).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from h2_support import EchoBackend, tls_config
from h2_wire import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    SETTINGS,
    Wire,
    block,
    frame,
    request_fields,
)
from https_support import Pki

from dataplane.command.messages import QueryMetricsOptions, Request
from dataplane.proxy.proxy_protocol.header import v2_header

pytestmark = pytest.mark.timeout(60)

CLIENT = ("203.0.113.7", 4242)


@pytest.fixture
def echo() -> Iterator[EchoBackend]:
    backend = EchoBackend()
    try:
        yield backend
    finally:
        backend.stop()


def _seen(wire: Wire, stream: int) -> dict[str, list[str]]:
    status, _, body = wire.response(stream)
    assert status == 200, body
    found: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        found.setdefault(name, []).append(value)
    return found


def test_proxy_v2_before_tls_and_x_real_ip_over_h2(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    pki = Pki(tmp_path)
    port = pysozu.free_port()
    listener = "expect_proxy = true\nsend_x_real_ip = true\nelide_x_real_ip = true"
    pysozu.start(tls_config(port, echo.port, pki.issue("example.com"), listener), workers=1)
    wire = Wire(port, pki.client_context(), before=v2_header(CLIENT, ("10.0.0.1", 443)))
    try:
        claims = [(b"x-real-ip", b"6.6.6.6"), (b"x-forwarded-for", b"6.6.6.6")]
        wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(request_fields() + claims)))
        seen = _seen(wire, 1)
        assert seen["x-real-ip"] == [CLIENT[0]]  # elided, then the PROXY source sent
        assert seen["x-forwarded-for"][-1].endswith(CLIENT[0])
        # X-Real-IP in trailers is elided too (a forged one must not reach the backend)
        fields = [*request_fields("/t", "POST"), (b"te", b"trailers")]
        wire.send(
            frame(HEADERS, END_HEADERS, 3, block(fields)),
            frame(DATA, 0, 3, b"abc"),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, block([(b"x-real-ip", b"6.6.6.6")])),
        )
        status, _, body = wire.response(3)
        assert status == 200 and json.loads(body)["length"] == 3
        assert b"6.6.6.6" not in body
    finally:
        wire.close()


def test_http11_and_h2_share_a_tls_listener(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    port = pysozu.free_port()
    pysozu.start(tls_config(port, echo.port, pki.issue("example.com")), workers=1)
    context = pki.client_context()
    context.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="example.com") as tls,
    ):
        tls.sendall(b"GET /h1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"path": "/h1"' in answer
    wire = Wire(port, pki.client_context())
    try:
        wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(request_fields("/h2"))))
        assert wire.response(1)[0] == 200
    finally:
        wire.close()


class _Mute:
    """An h2c backend that sends its SETTINGS and then nothing: no ACK, no answer."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.received = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.sendall(frame(SETTINGS, 0, 0))
        sock.settimeout(20)
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            self.received += data
        sock.close()

    def goaway_code(self) -> int | None:
        at = self.received.find(b"\x07\x00\x00\x00\x00\x00")  # GOAWAY type, flags, stream 0
        if at < 3:
            return None
        payload = self.received[at + 6 : at + 6 + 8]
        return int.from_bytes(payload[4:8], "big") if len(payload) == 8 else None


def test_a_backend_that_never_acknowledges_settings_is_dropped(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    mute = _Mute()
    try:
        pki = Pki(tmp_path)
        port = pysozu.free_port()
        config = tls_config(port, mute.port, pki.issue("example.com"))
        config = config.replace('protocol = "http"\n', 'protocol = "http"\nhttp2 = true\n', 1)
        pysozu.start(config, workers=1)
        wire = Wire(port, pki.client_context())
        try:
            started = time.monotonic()
            wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(request_fields())))
            ended = wire.wait(lambda f: f.stream == 1 and f.kind in (HEADERS, 3), timeout=15)
            assert ended is not None, wire.received
            assert 4 < time.monotonic() - started < 12  # sozu's ~5 s SETTINGS timeout
            if ended.kind == HEADERS:
                assert dict(wire.heads[1])[b":status"][:1] == b"5"
        finally:
            wire.close()
        deadline = time.monotonic() + 5
        while mute.goaway_code() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mute.goaway_code() == 4, mute.received  # SETTINGS_TIMEOUT
    finally:
        mute.listener.close()


def _client_connections(instance: Any) -> int | None:
    answer = instance.request(Request.of(query_metrics=QueryMetricsOptions()))
    gauge = answer.content.value.proxying.get("client.connections")  # the workers' sum
    return None if gauge is None else int(gauge.inner.gauge)


def test_closed_h2_connections_and_failed_handshakes_leave_the_count(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    """Every way out of a client connection gives its place back (the compiled build once
    refused anything but an HTTP/1.1 session there: HTTP/2 connections and aborted handshakes
    stayed counted until max_connections, and a soft stop failed)."""
    pki = Pki(tmp_path)
    port = pysozu.free_port()
    instance = pysozu.start(tls_config(port, echo.port, pki.issue("example.com")), workers=1)
    for stream in range(3):
        wire = Wire(port, pki.client_context())
        wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(request_fields(f"/{stream}"))))
        assert wire.response(1)[0] == 200
        wire.close()
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # no handshake
    deadline = time.monotonic() + 10
    while _client_connections(instance) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _client_connections(instance) == 0
    assert instance.cli("shutdown").returncode == 0
    assert instance.process.wait(20) == 0


@pytest.mark.timeout(60)
def test_an_h2_connection_closed_before_its_preface_leaves_and_lets_the_proxy_stop(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    """A client that negotiates h2 by ALPN and closes without sending the preface (TLS
    close_notify, then FIN): its connection leaves the count at once, and a stop finishes."""
    pki = Pki(tmp_path)
    port = pysozu.free_port()
    instance = pysozu.start(tls_config(port, echo.port, pki.issue("example.com")), workers=1)
    for offers in (["h2"], ["h2", "http/1.1"]):
        context = pki.client_context()
        context.set_alpn_protocols(offers)
        with (
            socket.create_connection(("127.0.0.1", port), 5) as raw,
            context.wrap_socket(raw, server_hostname="example.com") as tls,
        ):
            assert tls.selected_alpn_protocol() == "h2"
    deadline = time.monotonic() + 5
    while _client_connections(instance) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _client_connections(instance) == 0
    started = time.monotonic()
    instance.process.terminate()
    assert instance.process.wait(20) == 0
    assert time.monotonic() - started < 5
