"""Connections to backends, and the pool that keeps idle ones alive for reuse.

A `BackendConnection` belongs to one session while it carries that session's requests; when the
session leaves (or moves to another backend) a connection that is still clean (a complete
response read, nothing unexpected buffered) goes back to the pool, under its `Backend` (by
identity: no Python `__hash__` per take and return; a backend replaced by another at the same
address is a new key, and the old one's connections are closed when it leaves). An
idle pooled connection stays registered for reading: bytes or EOF from the backend mean it is
unusable, so it is closed. Idle connections expire after `IDLE_SECONDS`.

Sockets come from the pool's `connector` (`backend_socket` by default: a non-blocking TCP
socket, Nagle off), called once per new connection; a unit test's pool gives stand-ins, so
sessions run without a network. A cluster with `backend_tls` wraps it (mux/backend_tls.py):
the connection's `tls` is then its cluster's context, and a pooled connection is only taken
for a cluster with that very context.
"""

from __future__ import annotations

import errno
import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from dataplane.command.address import SocketAddress
from dataplane.proxy.balancing.load_balancing import Backend
from dataplane.proxy.buffers import NO_BUFFER, NO_VIEW
from dataplane.proxy.http1.head import ResponseHead
from dataplane.proxy.mux import backend_events
from dataplane.proxy.mux.backend_tls import BackendTlsStream, tls_step
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.command.backend_tls import BackendTlsContext
    from dataplane.proxy.mux.host import Host

IDLE_SECONDS: Final = 30.0
MAX_IDLE_PER_BACKEND: Final = 1024  # HTTP/2: hundreds of streams in flight, a connection each
# Response bodies are relayed through the backend connection's buffer: 128 KiB per read takes
# a 100 KiB body in one or two loop turns instead of 7 with sozu's 16 KiB (LIFECYCLE.md,
# "Performance notes"). A connection holds one only while response bytes sit in it
# (buffers.py); `buffer_size` is used instead when it is larger.
RELAY_BUFFER_SIZE: Final = 131072
# Final: native constants in the compiled build, not module-dict lookups (issue 22).
EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT


def backend_socket(address: SocketAddress) -> socket.socket:
    """The default `connector`: a non-blocking TCP socket for `address`, Nagle off (a
    request is sent whole, the next one only after the response)."""
    family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


Connector = Callable[[SocketAddress], socket.socket]


def _closed(_events: int) -> None:
    """`on_idle` of a closed connection (never registered again)."""


class BackendConnection:
    """One TCP connection to a backend, with a receive buffer while response bytes are in it."""

    __slots__ = (
        "address",
        "backend",
        "buffer",
        "cluster_id",
        "connect_started",
        "connected",
        "deadline",
        "end",
        "fd",
        "idle",
        "last_head",
        "last_response",
        "mask",
        "on_idle",
        "pool",
        "requests",
        "sock",
        "start",
        "template",
        "template_connection",
        "template_cookie",
        "template_id_header",
        "timer_slot",
        "tls",
        "view",
    )

    def __init__(
        self,
        pool: BackendPool,
        backend: Backend,
        cluster_id: str,
        sock: socket.socket,
        tls: BackendTlsContext | None = None,
    ) -> None:
        self.sock = sock  # from the pool's connector (`BackendPool.open`), maybe TLS-wrapped
        self.tls = tls
        self.fd = sock.fileno()
        self.pool = pool
        self.backend = backend
        self.address = backend.address
        self.cluster_id = cluster_id
        self.buffer, self.view = NO_BUFFER, NO_VIEW  # lent by the pool while bytes are held
        self.start = self.end = 0
        self.connected = False
        self.idle = False  # in the pool
        self.connect_started = 0.0
        self.requests = 0
        self.mask = 0
        # The last response head and its forwarded form split at the request id: a backend
        # answers the same head again and again (only `Date` changes, once a second).
        self.last_head = b""
        self.last_response: ResponseHead | None = None
        self.template: list[bytes] | None = None
        self.template_connection = b""
        self.template_cookie = b""
        self.template_id_header = b""
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        # its epoll handler while pooled, made once: not a bound method per return
        self.on_idle: Callable[[int], None] = self.on_idle_event

    def connect(self) -> int:
        """Start a non-blocking connect; returns 0, EINPROGRESS or the errno of the failure."""
        self.connect_started = self.pool.loop.now
        try:
            return self.sock.connect_ex(self.address.sockaddr())
        except OSError as error:
            return error.errno or errno.ECONNREFUSED

    def connect_error(self) -> int:
        """0 once connected (TLS: handshake done), HANDSHAKING while TLS is under way, else
        the errno of the failure."""
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if self.tls is None:
            return error
        return tls_step(self.pool.loop, self, self.sock, self.cluster_id, self.backend, error)

    def on_timeout(self, now: float) -> None:
        """Only pooled connections are on the wheel under their own name. One taken from the
        pool stays filed (its session times the exchange): cancelling at every take and
        filing again at every return cost two wheel operations per new client connection,
        where a connection filed earlier than its new deadline is only moved when its slot
        comes (TimerWheel.arm)."""
        if self.idle:
            self.pool.discard(self)

    def on_idle_event(self, events: int) -> None:
        """The epoll handler while pooled: an idle backend that speaks or hangs up cannot be
        reused (a TLS session ticket is no speech)."""
        sock = self.sock
        if isinstance(sock, BackendTlsStream) and sock.idle_usable():
            return
        self.pool.discard(self)

    def close(self, reuse_buffer: bool = False) -> None:
        """`reuse_buffer`: no view into the buffer is alive any more (nothing of it is queued
        for the client), so the pool may lend it again."""
        loop = self.pool.loop
        if self.buffer is not NO_BUFFER:
            loop.buffers.give_relay(self.buffer, self.view, reuse_buffer)
            self.buffer, self.view = NO_BUFFER, NO_VIEW
        if self.fd in loop.handlers:
            loop.unregister(self.fd)
            self.mask = 0
        loop.timers.cancel(self)
        self.sock.close()
        self.on_idle = _closed  # no cycle through the bound method left to collect
        if self.connected:
            self.connected = False
            backend_events.connection_closed(loop, self.cluster_id, self.backend)


class BackendPool:
    """Idle keep-alive connections, per backend address, most recently used first."""

    def __init__(self, loop: Host, connector: Connector = backend_socket) -> None:
        self.loop = loop
        self.connector = connector  # a socket per new connection (tests: stand-ins)
        self._idle: dict[Backend, list[BackendConnection]] = {}

    def __len__(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    def open(
        self, backend: Backend, cluster_id: str, tls: BackendTlsContext | None = None
    ) -> BackendConnection:
        """A new, not yet connected, connection to `backend` (`connect` starts it)."""
        sock = self.connector(backend.address)
        if tls is None:
            return BackendConnection(self, backend, cluster_id, sock)
        stream = cast("socket.socket", BackendTlsStream(tls, sock))  # socket-like, as used here
        return BackendConnection(self, backend, cluster_id, stream, tls)

    def take(
        self, backend: Backend, cluster_id: str, tls: BackendTlsContext | None = None
    ) -> BackendConnection | None:
        """An idle connection to `backend` made with `tls` (its cluster's context now),
        detached from the pool, or None."""
        idle = self._idle.get(backend)
        if not idle:
            return None
        conn = idle.pop()
        if conn.tls is not tls:  # the cluster's TLS settings changed since
            conn.idle = False
            conn.close()
            return None
        conn.idle = False  # its idle timer stays filed: `on_timeout` ignores a busy connection
        conn.cluster_id = cluster_id
        return conn

    def give_back(self, conn: BackendConnection) -> None:
        """Park a clean connection (its owner has already checked it is reusable)."""
        backend = conn.backend
        idle = self._idle.get(backend)
        if idle is None:
            if backend.removed:
                conn.close(reuse_buffer=True)
                return
            idle = self._idle[backend] = []
        if len(idle) >= MAX_IDLE_PER_BACKEND or self.loop.stopping or backend.removed:
            conn.close(reuse_buffer=True)  # clean: no byte in its buffer, no view into it
            return
        idle.append(conn)
        conn.idle = True
        if conn.buffer is not NO_BUFFER:  # clean: no byte in it, no view into it
            self.loop.buffers.give_relay(conn.buffer, conn.view)
            conn.buffer, conn.view = NO_BUFFER, NO_VIEW
        conn.start = conn.end = 0
        self.loop.set_handler(conn.fd, conn.on_idle)
        if conn.mask != EPOLLIN:
            self.loop.modify(conn.fd, EPOLLIN)
            conn.mask = EPOLLIN
        self.loop.timers.arm(conn, self.loop.now + IDLE_SECONDS)

    def discard(self, conn: BackendConnection) -> None:
        conn.idle = False
        idle = self._idle.get(conn.backend)
        if idle is not None and conn in idle:
            idle.remove(conn)
        conn.close()

    def discard_backend(self, backend: Backend) -> None:
        """Close the idle connections to a backend that left its cluster."""
        for conn in self._idle.pop(backend, ()):
            conn.close()

    def close_all(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
