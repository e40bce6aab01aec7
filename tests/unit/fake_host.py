"""A `Host` (dataplane/proxy/mux/host.py) for driving HTTP sessions by hand, without sockets.

- `FakeHost`: time you set (`now`), the real `TimerWheel` fired by hand (`advance`), a table
  of registered descriptors and their masks (`masks`, `handlers`, `fire`), the real
  `BufferPool`, a real `BackendPool` whose connector hands out `FakeBackendSocket`s, the real
  counters and metrics, finished requests in `ended`, events to main in `events`.
- `FakeSocket`: a client socket. `incoming` is what `recv_into` returns (then
  BlockingIOError, or EOF once `eof`); `sendmsg` takes at most `room` bytes (None: all) into
  `sent`, and raises BlockingIOError when the room is 0.
- `FakeBackendSocket`: the same, plus `connect_ex` (`connect_result`: EINPROGRESS, or an
  errno to refuse) and `getsockopt(SO_ERROR)` (`error`).
"""

from __future__ import annotations

import errno
import itertools
import select
import socket
from typing import TYPE_CHECKING, Any

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.proxy.buffers import BufferPool
from dataplane.proxy.clusters import HttpProxy
from dataplane.proxy.http1.forwarding import RequestIds
from dataplane.proxy.http1.head import ResponseParser
from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.mux.backend_pool import BackendPool
from dataplane.proxy.mux.h2_backends import H2Backends
from dataplane.proxy.mux.host import Host
from dataplane.proxy.observability.counters import Counters, ProxyProtocolFigures
from dataplane.proxy.observability.metrics import MetricsRegistry
from dataplane.proxy.timers import TimerWheel
from dataplane.proxy.worker.loop import file_waiting

if TYPE_CHECKING:
    from dataplane.command.responses import WorkerResponse
    from dataplane.proxy.mux.host import AccessLogLines, Handler
    from dataplane.proxy.observability.request_end import RequestEnd

CLIENT_BUFFER = 4096
RELAY_BUFFER = 16384


class FakeSocket:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.incoming = bytearray()
        self.eof = False
        self.room: int | None = None
        self.sent = bytearray()
        self.options: dict[tuple[int, int], int] = {}
        self.shut = False
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def recv_into(self, view: memoryview) -> int:
        if not self.incoming:
            if self.eof:
                return 0
            raise BlockingIOError
        count = min(len(view), len(self.incoming))
        view[:count] = self.incoming[:count]
        del self.incoming[:count]
        return count

    def recv(self, size: int) -> bytes:
        data = bytes(self.incoming[:size])
        if not data and not self.eof:
            raise BlockingIOError
        del self.incoming[:size]
        return data

    def send(self, data: bytes | memoryview) -> int:
        return self.sendmsg([data])

    def sendmsg(self, parts: list[bytes | memoryview]) -> int:
        data = b"".join(bytes(part) for part in parts)
        count = len(data) if self.room is None else min(self.room, len(data))
        if data and not count:
            raise BlockingIOError
        self.sent += data[:count]
        if self.room is not None:
            self.room -= count
        return count

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options[level, option] = value

    def shutdown(self, how: int) -> None:
        assert how == socket.SHUT_WR
        self.shut = True

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        """What was sent since the last `take`."""
        data = bytes(self.sent)
        self.sent.clear()
        return data


class FakeBackendSocket(FakeSocket):
    def __init__(self, fd: int, address: SocketAddress) -> None:
        super().__init__(fd)
        self.address = address
        self.connect_result = errno.EINPROGRESS
        self.error = 0
        self.connected_to: tuple[Any, ...] | None = None

    def connect_ex(self, address: tuple[Any, ...]) -> int:
        self.connected_to = address
        return self.connect_result

    def getsockopt(self, level: int, option: int) -> int:
        assert (level, option) == (socket.SOL_SOCKET, socket.SO_ERROR)
        return self.error


class FixedRequestIds(RequestIds):
    """Request ids you can write in an expected head: REQ-1, REQ-2, ..."""

    def __init__(self) -> None:  # (no time stamp, no random start)
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        return b"REQ-%d" % self.count


class FakeHost(Host):
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.stopping = False
        self.timers = TimerWheel(now)
        self.handlers: dict[int, Handler] = {}
        self.masks: dict[int, int] = {}
        self.handed_fd = -1  # hand_over
        self.sessions: set[Any] = set()
        self.max_connections = 1000
        self.closed: list[Any] = []
        self.buffers = BufferPool(CLIENT_BUFFER, RELAY_BUFFER, 0, 64)
        self.buffer_size = CLIENT_BUFFER
        # Backend sockets by connect order; `refused` ports get ECONNREFUSED from connect_ex.
        self.backend_sockets: list[FakeBackendSocket] = []
        self.refused: set[int] = set()
        self._fds = itertools.count(100)
        self.pool = BackendPool(self, connector=self._connect)  # type: ignore[arg-type]
        self.h2_backends = H2Backends(self)
        self.to_flush: set[Any] = set()  # `flush_soon`, written by `end_turn`
        self.to_file: list[Any] = []  # `file_soon`, filed by `advance`
        self.counters = Counters()
        self.h2_counters = H2Counters()
        self.metrics = MetricsRegistry()
        self.metrics_enabled = True
        self.proxy_protocol = ProxyProtocolFigures()
        self.ended: list[RequestEnd] | None = []
        self.events: list[WorkerResponse] = []
        self.proxy = HttpProxy(0, 0)
        self.request_ids = FixedRequestIds()
        self.access_log: AccessLogLines | None = None
        self.error_access_log: AccessLogLines | None = None
        self.response_parser = ResponseParser()

    def _connect(self, address: SocketAddress) -> FakeBackendSocket:
        sock = FakeBackendSocket(next(self._fds), address)
        if address.port in self.refused:
            sock.connect_result = errno.ECONNREFUSED
        self.backend_sockets.append(sock)
        return sock

    # -- Reactor ------------------------------------------------------------------------------

    def register(self, fd: int, handler: Handler, mask: int) -> None:
        assert fd not in self.handlers, f"fd {fd} registered twice"
        if fd == self.handed_fd:
            self.handed_fd = -1
        else:
            assert fd not in self.masks, f"fd {fd} already in the event set"
        self.handlers[fd], self.masks[fd] = handler, mask

    def set_handler(self, fd: int, handler: Handler) -> None:
        assert fd in self.handlers
        self.handlers[fd] = handler

    def modify(self, fd: int, mask: int) -> None:
        assert fd in self.handlers, f"fd {fd} modified while not registered"
        self.masks[fd] = mask

    def unregister(self, fd: int) -> None:
        del self.handlers[fd], self.masks[fd]

    def forget(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        self.masks.pop(fd, None)

    def hand_over(self, fd: int, mask: int) -> None:
        assert self.handed_fd == -1, "one hand-over at a time"
        del self.handlers[fd]
        self.masks[fd] = mask  # still in the event set
        self.handed_fd = fd

    def end_hand_over(self, fd: int) -> None:
        if self.handed_fd == fd:
            self.handed_fd = -1
            del self.masks[fd]

    def fire(self, fd: int, events: int = select.EPOLLIN) -> None:
        """What epoll would report: call the descriptor's handler with `events` (then the
        turn's batched writes, as the loop does)."""
        self.handlers[fd](events)
        self.end_turn()

    def file_soon(self, entry: Any) -> None:
        self.to_file.append(entry)  # filed at the next `advance`, as the loop's tick does

    def flush_soon(self, writer: Any) -> None:
        self.to_flush.add(writer)

    def end_turn(self) -> None:
        """What the loop does after a turn's events: the batched writes."""
        writers, self.to_flush = self.to_flush, set()
        for writer in writers:
            writer.flush()

    def advance(self, seconds: float) -> None:
        """Let time pass and fire the timers that are due, as the loop's tick does."""
        self.now += seconds
        waiting, self.to_file = self.to_file, []
        file_waiting(self.timers, waiting)
        self.timers.expire(self.now)

    # -- Admission, Observability --------------------------------------------------------------

    def pause_accept(self) -> None:
        pass

    def session_closed(self, session: Any) -> None:
        self.sessions.discard(session)
        self.closed.append(session)

    def send(self, response: WorkerResponse) -> None:
        self.events.append(response)

    def route(self, listener: HttpListenerConfig, backends: int = 1) -> None:
        """`listener`, routing example.com to cluster `app` with backends on ports 9001..."""
        apply = self.proxy.apply
        apply(Request.of(add_http_listener=listener))
        apply(Request.of(add_cluster=Cluster(cluster_id="app")))
        for n in range(1, backends + 1):
            address = SocketAddress.parse(f"127.0.0.1:{9000 + n}")
            backend = AddBackend(cluster_id="app", backend_id=f"b{n}", address=address)
            apply(Request.of(add_backend=backend))
        front = RequestHttpFrontend(
            address=listener.address, hostname="example.com", cluster_id="app"
        )
        apply(Request.of(add_http_frontend=front))
