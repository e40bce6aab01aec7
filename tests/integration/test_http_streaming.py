"""Bodies stream both ways through bounded buffers: big, chunked, close-delimited, slow readers."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
from http_support import Backend, Client, Seen, get, read_head, running_worker

pytestmark = pytest.mark.timeout(120)

BLOCK = os.urandom(1 << 20)


def streamed(size: int, chunked: bool = False) -> object:
    """A responder sending `size` bytes of BLOCK repeated, in 1 MiB writes."""

    def respond(seen: Seen, conn: socket.socket) -> bytes:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        conn.sendall(f"HTTP/1.1 200 OK\r\n{framing}\r\n\r\n".encode())
        left = size
        while left:
            piece = BLOCK[: min(left, len(BLOCK))]
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            left -= len(piece)
        return b"0\r\n\r\n" if chunked else b""

    return respond


def memory_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0])


def expected_digest(size: int) -> str:
    digest = hashlib.sha256()
    left = size
    while left:
        piece = BLOCK[: min(left, len(BLOCK))]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


def read_body_digest(sock: socket.socket, pending: bytearray, size: int) -> str:
    digest = hashlib.sha256()
    digest.update(bytes(pending[:size]))
    left = size - min(size, len(pending))
    pending.clear()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    while left:
        received = sock.recv_into(view[: min(left, len(buffer))])
        assert received, f"connection closed with {left} bytes missing"
        digest.update(view[:received])
        left -= received
    return digest.hexdigest()


def test_8_mib_response_passes_intact() -> None:
    size = 8 << 20
    backend = Backend(streamed(size))  # type: ignore[arg-type]
    with running_worker({"a": ("a.example", [backend.port])}) as (_worker, port):
        client = Client(port, timeout=30)
        for _ in range(2):  # and the connection is still usable after it
            client.send(get("a.example"))
            head = read_head(client.sock, client.pending)
            assert head is not None and head.startswith(b"HTTP/1.1 200")
            assert read_body_digest(client.sock, client.pending, size) == expected_digest(size)


@pytest.mark.slow
def test_1_gib_response_passes_intact_in_bounded_time() -> None:
    size = 1 << 30
    backend = Backend(streamed(size))  # type: ignore[arg-type]
    with running_worker({"a": ("a.example", [backend.port])}) as (worker, port):
        client = Client(port, timeout=30)
        started = time.monotonic()
        client.send(get("a.example"))
        head = read_head(client.sock, client.pending)
        assert head is not None and b"Content-Length: 1073741824" in head
        assert read_body_digest(client.sock, client.pending, size) == expected_digest(size)
        assert time.monotonic() - started < 90
        assert memory_kib(worker.process.pid, "VmHWM") < 200_000  # streamed, never held whole


def test_chunked_response_is_forwarded_verbatim() -> None:
    size = 3 << 20
    backend = Backend(streamed(size, chunked=True))  # type: ignore[arg-type]
    with running_worker({"a": ("a.example", [backend.port])}) as (_worker, port):
        client = Client(port, timeout=30)
        status, head, body = client.roundtrip(get("a.example"))
        assert status == 200 and b"Transfer-Encoding: chunked" in head
        decoded = bytearray()
        rest = body
        while True:
            line, _, rest = rest.partition(b"\r\n")
            length = int(line, 16)
            if length == 0:
                break
            decoded += rest[:length]
            rest = rest[length + 2 :]
        assert hashlib.sha256(decoded).hexdigest() == expected_digest(size)


def test_big_uploads_stream_to_the_backend() -> None:
    digests: list[str] = []

    def record(seen: Seen, conn: socket.socket) -> bytes:
        digests.append(hashlib.sha256(seen.body).hexdigest())
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    backend = Backend(record)
    payload = os.urandom(5 << 20)
    with running_worker({"a": ("a.example", [backend.port])}) as (_worker, port):
        client = Client(port, timeout=30)
        head = f"POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: {len(payload)}\r\n\r\n"
        client.send(head.encode() + payload)
        assert client.response()[::2] == (200, b"ok")
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(payload[i : i + 70000]), payload[i : i + 70000])
            for i in range(0, len(payload), 70000)
        )
        client.send(
            b"POST /up HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\nX-Trailer: t\r\n\r\n"
        )
        assert client.response()[::2] == (200, b"ok")
    assert digests[0] == hashlib.sha256(payload).hexdigest()
    assert digests[1] == hashlib.sha256(chunks + b"0\r\nX-Trailer: t\r\n\r\n").hexdigest()


def test_close_delimited_response_then_client_closed() -> None:
    def respond(seen: Seen, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 100_000)
        return None  # and close: the body ends with the connection

    backend = Backend(respond)  # type: ignore[arg-type]
    with running_worker({"a": ("a.example", [backend.port])}) as (_worker, port):
        client = Client(port)
        status, head, body = client.roundtrip(get("a.example"))
        assert status == 200 and body == b"x" * 100_000
        assert b"Connection: close" in head


def test_slow_reader_gets_back_pressure_not_memory_growth() -> None:
    size = 64 << 20
    backend = Backend(streamed(size))  # type: ignore[arg-type]
    with running_worker({"a": ("a.example", [backend.port])}) as (worker, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(get("a.example"))
        time.sleep(1.5)  # read nothing: the proxy must stop reading the backend
        rss_kib = memory_kib(worker.process.pid, "VmRSS")
        assert rss_kib < 100_000
        pending = bytearray()
        head = read_head(sock, pending)
        assert head is not None
        assert read_body_digest(sock, pending, size) == expected_digest(size)
        sock.close()


def test_backend_dying_mid_response_closes_the_client() -> None:
    def respond(seen: Seen, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        return None

    backend = Backend(respond)  # type: ignore[arg-type]
    with running_worker({"a": ("a.example", [backend.port])}) as (worker, port):
        client = Client(port)
        client.send(get("a.example"))
        head = read_head(client.sock, client.pending)
        assert head is not None and head.startswith(b"HTTP/1.1 200")
        data = bytes(client.pending)
        while chunk := client.sock.recv(4096):
            data += chunk
        assert data == b"x" * 10  # truncated, then closed: never a hang
        assert worker.process.poll() is None
