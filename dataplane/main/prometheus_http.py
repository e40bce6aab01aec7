"""The Prometheus endpoint: `GET /metrics` served from main's selector loop, without threads.

Integration contract (all main has to provide):

    endpoint = PrometheusEndpoint(
        address,                 # "[prometheus] address" or --prometheus-address
        loop,                    # main's EventLoop: add / modify / remove / call_later
        collector,               # WorkersCollector(MainFigures(...))
        request_worker_metrics,  # worker_metrics_requester(pool, worker_timeout)
    )
    endpoint.start()             # binds (raises OSError), registers the listening socket
    ...
    endpoint.close()             # at shutdown

`request_worker_metrics(done)` asks the workers for their figures and calls
`done({worker_id: WorkerMetrics | None})` exactly once (None: no answer before its deadline).
A scrape waits for it at most `deadline` seconds: after that it is answered with the figures
already known and `pysozu_scrape_deadlines_missed_total` grows. Scrapes arriving while workers
are being asked share that one round.

Each connection serves one request then closes. A request is at most `MAX_REQUEST_BYTES`; the
whole exchange (request, answer, the client's close) lasts at most `connection_timeout`, so a
slow or silent client is closed; at most `max_connections` are open at once (more are closed at
accept).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from dataplane.command.address import SocketAddress
from dataplane.main.prometheus import RequestWorkerMetrics, WorkerAnswers, WorkersCollector

log = logging.getLogger("pysozu.main")

MAX_REQUEST_BYTES = 8192
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}  # fmt: skip
# `/healthz`, `/readyz`: what a probe asks of main (see prometheus_main.health_answers).
HEALTH_PATHS = (b"/healthz", b"/readyz")
Health = Callable[[bool], tuple[bool, str]]  # ready? -> (ok, why)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Reactor(Protocol):
    """What the endpoint needs from main's loop (`dataplane.main.loop.EventLoop` fits)."""

    def add(self, fileobj: Any, events: int, callback: Callable[[int], None]) -> None: ...
    def modify(self, fileobj: Any, events: int, callback: Callable[[int], None]) -> None: ...
    def remove(self, fileobj: Any) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


class PrometheusEndpoint:
    def __init__(
        self,
        address: str | SocketAddress,
        loop: Reactor,
        collector: WorkersCollector,
        request_worker_metrics: RequestWorkerMetrics,
        *,
        deadline: float = 3.0,
        connection_timeout: float = 10.0,
        max_connections: int = 16,
        health: Health | None = None,
    ) -> None:
        self.address = (
            address if isinstance(address, SocketAddress) else SocketAddress.parse(address)
        )
        self.loop = loop
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.request_worker_metrics = request_worker_metrics
        self.health = health  # answers /healthz and /readyz (None: 404 there)
        self.deadline = deadline
        self.connection_timeout = connection_timeout
        self.max_connections = max_connections
        self.connections: set[_Connection] = set()
        self._waiting: list[Callable[[], None]] = []
        self._round = 0  # which gathering round `done` belongs to
        self._timer: Cancellable | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        family = socket.AF_INET6 if self.address.ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self.address.sockaddr())
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.loop.add(sock, selectors.EVENT_READ, self.on_readable)
        log.info("Prometheus endpoint on http://%s/metrics", self.bound_address)

    @property
    def bound_address(self) -> str:
        assert self._sock is not None, "start() first"
        host, port = self._sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def on_readable(self, _mask: int) -> None:
        assert self._sock is not None
        for _ in range(self.max_connections):
            try:
                conn, _peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE and friends: try again on the next event
                log.warning("Prometheus endpoint: accept failed: %s", error)
                return
            if len(self.connections) >= self.max_connections:
                conn.close()
                continue
            self.connections.add(_Connection(self, conn))

    def collect_async(self, callback: Callable[[], None]) -> None:
        """Call `callback` once fresh worker figures are in the collector, or at the deadline."""
        self._waiting.append(callback)
        if len(self._waiting) > 1:
            return  # a round is already under way: share it
        self._round += 1
        current = self._round
        self._timer = self.loop.call_later(self.deadline, lambda: self._finish(current, None))
        try:
            self.request_worker_metrics(lambda answers: self._finish(current, answers))
        except Exception:
            log.exception("Prometheus endpoint: asking the workers failed")
            self._finish(current, None)

    def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def close(self) -> None:
        for connection in list(self.connections):
            connection.close()
        if self._sock is not None:
            self.loop.remove(self._sock)
            self._sock.close()
            self._sock = None

    def _finish(self, round_: int, answers: WorkerAnswers | None) -> None:
        if round_ != self._round:
            return  # a newer round has begun: its answers are fresher
        if answers is not None:
            self.collector.update(answers)  # even late: it freshens the next scrape
        if not self._waiting:
            return
        if answers is None:
            self.collector.main.scrape_deadlines_missed += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()


class _Connection:
    """One scrape: read a request, maybe wait for the workers, write the answer, close."""

    def __init__(self, endpoint: PrometheusEndpoint, sock: socket.socket) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.received = bytearray()
        self.outgoing = memoryview(b"")
        self.writing = False  # registered for EVENT_WRITE
        self.closed = False
        sock.setblocking(False)
        endpoint.loop.add(sock, selectors.EVENT_READ, self._on_readable)
        self.timer = endpoint.loop.call_later(endpoint.connection_timeout, self.close)

    def _on_readable(self, _mask: int) -> None:
        try:
            chunk = self.sock.recv(MAX_REQUEST_BYTES + 1 - len(self.received))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        self.received += chunk
        end = self.received.find(b"\r\n\r\n")
        if end < 0:
            if len(self.received) > MAX_REQUEST_BYTES:
                self._answer(431, b"request too large\n")
            return
        self.endpoint.loop.remove(self.sock)  # one request per connection: stop reading
        self._handle(bytes(self.received[:end]))

    def _handle(self, head: bytes) -> None:
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._answer(400, b"bad request\n")
            return
        method, target, _version = parts
        path = target.partition(b"?")[0]
        health = self.endpoint.health
        known = path == b"/metrics" or (health is not None and path in HEALTH_PATHS)
        if not known:
            self._answer(404, b"only /metrics, /healthz and /readyz live here\n")
            return
        if method not in (b"GET", b"HEAD"):
            self._answer(405, b"GET or HEAD\n", extra=b"Allow: GET, HEAD\r\n")
            return
        if path != b"/metrics":
            assert health is not None
            ok, why = health(path == b"/readyz")
            self._answer(200 if ok else 503, why.encode() + b"\n", head_only=method == b"HEAD")
            return
        accept = ""
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"accept":
                accept = value.strip().decode("latin-1")
        head_only = method == b"HEAD"
        self.endpoint.collect_async(lambda: self._scrape(accept, head_only))

    def _scrape(self, accept: str, head_only: bool) -> None:
        if self.closed:
            return
        try:
            body, content_type = self.endpoint.render(accept)
        except Exception:
            log.exception("Prometheus endpoint: rendering the metrics failed")
            self.close()
            return
        header = f"Content-Type: {content_type}\r\n".encode()
        self._answer(200, body, extra=header, head_only=head_only)

    def _answer(
        self, status: int, body: bytes, extra: bytes = b"", head_only: bool = False
    ) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        ).encode()
        if status != 200:
            extra += b"Content-Type: text/plain; charset=utf-8\r\n"
        self.outgoing = memoryview(head + extra + b"\r\n" + (b"" if head_only else body))
        self.endpoint.loop.remove(self.sock)
        self._on_writable(0)

    def _on_writable(self, _mask: int) -> None:
        while self.outgoing:
            try:
                sent = self.sock.send(self.outgoing)
            except (BlockingIOError, InterruptedError):
                if not self.writing:
                    self.writing = True
                    self.endpoint.loop.add(self.sock, selectors.EVENT_WRITE, self._on_writable)
                return
            except OSError:
                break
            self.outgoing = self.outgoing[sent:]
        self._linger()

    def _linger(self) -> None:
        """Half-close, then discard what the client still sends until it closes: closing with
        unread bytes would reset the connection and could destroy the answer in flight."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.endpoint.loop.remove(self.sock)
        self.endpoint.loop.add(self.sock, selectors.EVENT_READ, self._on_draining)

    def _on_draining(self, _mask: int) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.cancel()
        self.endpoint.loop.remove(self.sock)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.endpoint.connections.discard(self)
