"""Hostile or careless TLS clients cost nothing to the others: silent clients are closed at
the handshake timeout, garbage and half handshakes are dropped, and a large response with
`Connection: close` arrives whole (close_notify after the last byte)."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from http_support import Backend, Seen
from https_support import Pki, TlsClient, https_config

pytestmark = pytest.mark.timeout(60)
LARGE = 8 * 1024 * 1024 + 17
PIPELINED = 80  # requests of ~350 bytes sent at once


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def test_silent_client_is_closed_at_the_handshake_timeout(pysozu, backends, pki) -> None:
    cert = pki.issue("a.example")
    port = pysozu.free_port()
    config = https_config(
        port, {"a": ("a.example", backends.start("app-a"), cert)}, listener="front_timeout = 1"
    )
    pysozu.start(config)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as silent:
        started = time.monotonic()
        assert silent.recv(1024) == b""  # closed by the proxy, without a word
        # front_timeout is 1 s; the upper bound leaves room for a loaded CI machine while
        # still telling a handshake timeout from the 60 s default.
        assert 0.5 < time.monotonic() - started < 10.0


def test_garbage_and_half_handshakes_do_not_disturb_another_client(pysozu, backends, pki) -> None:
    cert = pki.issue("a.example")
    port = pysozu.free_port()
    pysozu.start(https_config(port, {"a": ("a.example", backends.start("app-a"), cert)}))
    with TlsClient(port, "a.example", pki.client_context()) as good:
        assert good.get("a.example").status == 200
        for payload in (
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",  # plain HTTP on the TLS port
            b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",  # a truncated, invalid ClientHello
            bytes(range(256)) * 64,
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as bad:
                bad.sendall(payload)
                bad.settimeout(5)
                try:
                    while bad.recv(65536):  # an alert at most, then the close
                        pass
                except ConnectionResetError:
                    pass
            assert good.get("a.example").status == 200
        # a client that leaves in the middle of its handshake
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        half = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="a.example")
        with pytest.raises(ssl.SSLWantReadError):
            half.do_handshake()
        raw.sendall(outgoing.read())
        raw.recv(65536)  # the server's first flight
        raw.close()
        assert good.get("a.example").status == 200


def large_close(seen: Seen, conn: object) -> bytes:
    body = b"x" * (LARGE - 1) + b"!"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % LARGE + body


def read_to_close(port: int, pki: Pki, request: bytes) -> bytes:
    with TlsClient(port, "a.example", pki.client_context(), timeout=20) as client:
        client.sock.sendall(request)
        received = bytearray()
        while chunk := client.sock.recv(1 << 20):  # ends on close_notify (or EOF)
            received += chunk
        return bytes(received)


def test_large_response_with_connection_close_is_not_truncated(pysozu, pki) -> None:
    cert = pki.issue("a.example")
    backend = Backend(respond=large_close)
    port = pysozu.free_port()
    try:
        pysozu.start(https_config(port, {"a": ("a.example", backend.port, cert)}))
        results: list[bytes] = []
        request = b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        threads = [
            threading.Thread(target=lambda: results.append(read_to_close(port, pki, request)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
    finally:
        backend.close()
    assert len(results) == 2
    for data in results:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert len(body) == LARGE and body.endswith(b"x!")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_s_client_sees_the_sni_certificate(pysozu, backends, pki, tmp_path) -> None:
    cert = pki.issue("a.example")
    port = pysozu.free_port()
    pysozu.start(https_config(port, {"a": ("a.example", backends.start("app-a"), cert)}))
    ca_file = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_file))
    result = subprocess.run(
        [
            "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example",
            "-CAfile", str(ca_file), "-verify_return_error", "-quiet",
        ],
        input=b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        capture_output=True,
        timeout=20,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.1 200") and result.stdout.endswith(b"app-a")


def body_size(seen: Seen, conn: object) -> bytes:
    body = b"%d:%s" % (len(seen.body), seen.body[-4:])
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_large_upload_and_pipelined_requests_over_tls(pysozu, pki) -> None:
    """Request bytes OpenSSL decrypted ahead (records larger than the room left in the
    buffer, several requests in one record) are read without waiting for another event."""
    cert = pki.issue("a.example")
    backend = Backend(respond=body_size)
    port = pysozu.free_port()
    try:
        pysozu.start(https_config(port, {"a": ("a.example", backend.port, cert)}))
        with TlsClient(port, "a.example", pki.client_context(), timeout=20) as client:
            size = 3 * 1024 * 1024 + 5
            head = b"POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: %d\r\n\r\n" % size
            client.sock.sendall(head + b"y" * (size - 4) + b"END!")
            response = http.client.HTTPResponse(client.sock)  # type: ignore[arg-type]
            response.begin()
            assert response.read() == b"%d:END!" % size
            pad = b"p" * 300
            pipelined = b"GET /%d HTTP/1.1\r\nHost: a.example\r\nX-Pad: %s\r\n\r\n"
            # more than one buffer: the second TLS record finds little room left
            client.sock.sendall(b"".join(pipelined % (n, pad) for n in range(PIPELINED)))
            reader = client.sock.makefile("rb")
            for _ in range(PIPELINED):
                head = b"".join(iter(reader.readline, b"\r\n"))
                assert head.startswith(b"HTTP/1.1 200")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                assert reader.read(length) == b"0:"
    finally:
        backend.close()
