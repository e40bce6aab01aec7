"""Harness for the HTTP engine's integration tests: a real worker process, real backends.

`WorkerProcess` starts `python -m dataplane worker ...` exactly as main does (socketpairs for
the channel and SCM, the initial state in an anonymous file), hands it a listening socket over
SCM and talks to it over the channel. `Backend` is a threaded HTTP/1.1 server on 127.0.0.1
whose answer is a function of the request, so tests can script any backend behaviour.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from dataplane.command.address import SocketAddress
from dataplane.command.channel import Channel
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    Empty,
    HardStopOptions,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
    ServerConfig,
    WorkerRequest,
)
from dataplane.command.responses import ResponseStatus, WorkerResponse
from dataplane.command.scm import Listeners, send_listeners
from dataplane.command.statefile import encode_state

PYTHON = sys.executable


def listening_socket() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock, sock.getsockname()[1]


def routing_state(
    port: int,
    clusters: dict[str, tuple[str, list[int]]],
    cluster_options: dict[str, object] | None = None,
    **listener: object,
) -> list[Request]:
    """Requests for one active HTTP listener and, per cluster id, (hostname, backend ports);
    `cluster_options` go into every Cluster, `listener` into the HttpListenerConfig."""
    address = SocketAddress.parse(f"127.0.0.1:{port}")
    requests = [
        Request.of(add_http_listener=HttpListenerConfig(address=address, active=True, **listener))
    ]
    for cluster_id, (hostname, ports) in clusters.items():
        cluster = Cluster(cluster_id=cluster_id, **(cluster_options or {}))  # type: ignore[arg-type]
        requests.append(Request.of(add_cluster=cluster))
        requests.append(
            Request.of(
                add_http_frontend=RequestHttpFrontend(
                    cluster_id=cluster_id, address=address, hostname=hostname
                )
            )
        )
        for index, backend_port in enumerate(ports):
            requests.append(
                Request.of(
                    add_backend=AddBackend(
                        cluster_id=cluster_id,
                        backend_id=f"{cluster_id}-{index}",
                        sticky_id=f"sticky-{index}",
                        address=SocketAddress.parse(f"127.0.0.1:{backend_port}"),
                    )
                )
            )
    return requests


def worker_command(channel_fd: int, scm_fd: int, state_fd: int) -> list[str]:
    """The command line main uses to start a worker."""
    return [
        *(PYTHON, "-m", "dataplane", "worker", "--id", "1"),
        *("--fd", str(channel_fd), "--scm", str(scm_fd)),
        *("--configuration-state-fd", str(state_fd)),
        *("--command-buffer-size", "1000000", "--max-command-buffer-size", "2000000"),
    ]


class WorkerProcess:
    """One worker, booted the way main boots it."""

    def __init__(
        self,
        state: list[Request],
        config: ServerConfig | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        main_end, worker_end = socket.socketpair()
        scm_main, scm_worker = socket.socketpair()
        with tempfile.TemporaryFile() as state_file:
            state_file.write(encode_state(state))
            state_file.seek(0)
            fds = [worker_end.fileno(), scm_worker.fileno(), state_file.fileno()]
            self.process = subprocess.Popen(worker_command(*fds), pass_fds=fds)
        worker_end.close()
        scm_worker.close()
        self.scm = scm_main
        self.channel: Channel[WorkerResponse] = Channel(main_end, WorkerResponse)
        self._count = 0
        self.channel.send(config or ServerConfig())
        boot = self.call(Request.of(status=Empty()), request_id="INITIAL-STATUS-1")
        assert boot.status == ResponseStatus.OK, boot
        send_listeners(scm_main, listeners or Listeners())
        if listeners is not None:
            listeners.close()

    def call(
        self, request: Request, request_id: str | None = None, timeout: float = 10.0
    ) -> WorkerResponse:
        """Send one request; return its final answer (events and PROCESSING are skipped)."""
        self._count += 1
        request_id = request_id or f"{request.verb}-1-{self._count}"
        self.channel.send(WorkerRequest(id=request_id, content=request))
        deadline = time.monotonic() + timeout
        while True:
            answer = self.channel.receive_one(timeout=max(0.01, deadline - time.monotonic()))
            final = (
                isinstance(answer, WorkerResponse) and answer.status != ResponseStatus.PROCESSING
            )
            if final and answer.id == request_id:  # type: ignore[union-attr]
                return answer  # type: ignore[return-value]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.call(Request.of(hard_stop=HardStopOptions()), timeout=2.0)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.channel.close()
        self.scm.close()


@contextlib.contextmanager
def running_worker(
    clusters: dict[str, tuple[str, list[int]]],
    config: ServerConfig | None = None,
    cluster_options: dict[str, object] | None = None,
    **listener: object,
) -> Iterator[tuple[WorkerProcess, int]]:
    """A worker serving one HTTP listener on a fresh port (handed over SCM): (worker, port)."""
    sock, port = listening_socket()
    state = routing_state(port, clusters, cluster_options, **listener)
    worker = WorkerProcess(state, config, Listeners(http={f"127.0.0.1:{port}": sock}))
    try:
        yield worker, port
    finally:
        worker.stop()


# ---------------------------------------------------------------------------------------------
# Backends


@dataclass
class Seen:
    """A request as a backend received it."""

    head: bytes
    body: bytes

    def header(self, name: str) -> list[str]:
        wanted = name.lower().encode()
        values = []
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.lower() == wanted:
                values.append(value.strip().decode("latin-1"))
        return values


Responder = Callable[[Seen, socket.socket], bytes | None]


def ok(body: bytes = b"hello", extra: str = "") -> Responder:
    def respond(seen: Seen, conn: socket.socket) -> bytes:
        return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body

    return respond


def read_head(conn: socket.socket, pending: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in pending:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    pending[:] = rest
    return head + b"\r\n\r\n"


def read_exact(conn: socket.socket, pending: bytearray, size: int) -> bytes:
    while len(pending) < size:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed mid-body")
        pending += chunk
    data = bytes(pending[:size])
    del pending[:size]
    return data


def _read_line(conn: socket.socket, pending: bytearray) -> None:
    while b"\r\n" not in pending:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed mid-body")
        pending += chunk


def read_chunked(conn: socket.socket, pending: bytearray) -> bytes:
    """Raw chunked body, framing included, up to the end of the trailers."""
    out = bytearray()
    while True:
        _read_line(conn, pending)
        line, _, _ = bytes(pending).partition(b"\r\n")
        out += read_exact(conn, pending, len(line) + 2)
        size = int(line.split(b";")[0], 16)
        if size == 0:
            while True:
                _read_line(conn, pending)
                trailer, _, _ = bytes(pending).partition(b"\r\n")
                out += read_exact(conn, pending, len(trailer) + 2)
                if not trailer:
                    return bytes(out)
        out += read_exact(conn, pending, size + 2)


@dataclass
class Backend:
    """A threaded keep-alive HTTP/1.1 backend; `respond` returns the raw response (None: close)."""

    respond: Responder = field(default_factory=ok)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.sock, self.port = listening_socket()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        pending = bytearray()
        with conn:
            try:
                while True:
                    head = read_head(conn, pending)
                    if head is None:
                        return
                    seen = Seen(head, b"")
                    lowered = head.lower()
                    if b"transfer-encoding: chunked" in lowered:
                        seen.body = read_chunked(conn, pending)
                    elif b"content-length:" in lowered:
                        length = int(seen.header("content-length")[0])
                        seen.body = read_exact(conn, pending, length)
                    self.seen.append(seen)
                    answer = self.respond(seen, conn)
                    if answer is None:
                        return
                    conn.sendall(answer)
            except (ConnectionError, OSError):
                return

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class SlowBackend:
    """A keep-alive backend answering each request `delay` seconds after reading it; `arrived`
    is set when a request is read, `answered` when an answer is sent."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrived = threading.Event()
        self.answered = threading.Event()
        self._backend = Backend(respond=self._respond)
        self.port = self._backend.port

    def _respond(self, _seen: Seen, _conn: socket.socket) -> bytes:
        self.arrived.set()
        time.sleep(self.delay)
        self.answered.set()
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"

    def close(self) -> None:
        self._backend.close()


# ---------------------------------------------------------------------------------------------
# Clients


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the proxy closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = bytearray()
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        return bytes(received)


class Client:
    """A keep-alive client on a raw socket that reads one response at a time."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.pending = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, head_request: bool = False) -> tuple[int, bytes, bytes]:
        """(status, head, body) of the next response (Content-Length or chunked bodies)."""
        head = read_head(self.sock, self.pending)
        if head is None:
            raise ConnectionError("closed before a response")
        status = int(head.split(b" ", 2)[1])
        seen = Seen(head, b"")
        if head_request or status in (204, 304) or status < 200:
            return status, head, b""
        if b"transfer-encoding: chunked" in head.lower():
            return status, head, read_chunked(self.sock, self.pending)
        length = seen.header("content-length")
        if length:
            return status, head, read_exact(self.sock, self.pending, int(length[0]))
        body = bytearray(self.pending)
        while chunk := self.sock.recv(65536):
            body += chunk
        return status, head, bytes(body)

    def roundtrip(self, request: bytes) -> tuple[int, bytes, bytes]:
        self.send(request)
        return self.response(head_request=request.startswith(b"HEAD "))

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            return True

    def close(self) -> None:
        self.sock.close()


def get(host: str = "example.com", path: str = "/", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
