"""h2c (prior knowledge) connections to the backends of clusters with `http2 = true`.

One `H2Backend` is one TCP connection to one backend, carrying many streams at once (up to
the backend's SETTINGS_MAX_CONCURRENT_STREAMS): a `BackConnection` (http2/, sans-IO) plus the
socket. `H2Backends` keeps them per backend address and finds a connection with room for a new
stream, opening one when none has. A backend's GOAWAY makes its connection take no new stream
(streams it did not process come back refused, and are retried on another connection); an idle
connection closes after IDLE_SECONDS. Connect failures and successes feed the circuit breaker
as for HTTP/1.1 backends. A cluster with `backend_tls` speaks h2 over TLS (mux/backend_tls.py).

`H2Exchange` is one stream's request on such a connection, with the interface `H1Exchange`
has (start, send_body, send_trailers, resume, cancel, done): the stream does not know which
protocol its backend speaks. Its stream is an HTTP/2 client's (`H2Stream`) or an HTTP/1.1
client's (`H1Stream`, h1 -> h2). Response body bytes are credited back to the backend only once
the client's side took them, so a slow client holds at most a window of them. Once the request
is sent, a backend silent for the cluster's (or listener's) back_timeout gets the stream reset
and the client a 504, as with HTTP/1.1 backends.
"""

from __future__ import annotations

import errno
import select
import socket
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from dataplane.proxy.http2 import (
    Body,
    ConnectionClosed,
    Event,
    H2Limits,
    Informational,
    ResponseHead,
    Sendable,
    StreamReset,
    Trailers,
)
from dataplane.proxy.mux import backend_events
from dataplane.proxy.mux.backend_choice import next_backend, sticky_cookie_value
from dataplane.proxy.mux.backend_tls import HANDSHAKING, BackendTlsStream, tls_step
from dataplane.proxy.mux.session_fields import MAX_CONNECT_TRIES
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.command.address import SocketAddress
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http2.events import Fields
    from dataplane.proxy.mux.h1_stream import H1Stream
    from dataplane.proxy.mux.h2_stream import H2Stream
    from dataplane.proxy.mux.host import Host

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
IDLE_SECONDS = 30.0
# A backend is no attacker: sozu's flood limits guard the front. A busy gRPC server sends a
# WINDOW_UPDATE per message on stream 0, and a long-lived connection sees many cancels.
_UNLIMITED = 2**31 - 1
BACK_LIMITS = H2Limits().with_values(
    max_rst_stream_per_window=_UNLIMITED,
    max_ping_per_window=_UNLIMITED,
    max_settings_per_window=_UNLIMITED,
    max_empty_data_per_window=_UNLIMITED,
    max_window_update_stream0_per_window=_UNLIMITED,
    max_glitch_count=_UNLIMITED,
    max_rst_stream_lifetime=_UNLIMITED,
    max_rst_stream_abusive_lifetime=_UNLIMITED,
    max_rst_stream_emitted_lifetime=_UNLIMITED,
    max_ping_lifetime=_UNLIMITED,
    max_settings_lifetime=_UNLIMITED,
    # A silent backend stream ends by the exchange's back_timeout (504), not by the reaper.
    stream_idle_timeout=float(_UNLIMITED),
)
READ_SIZE = 65_536
INFINITY = float("inf")


class H2Backend:
    """One h2c connection to a backend."""

    __slots__ = (
        "back",
        "backend",
        "closed",
        "cluster",
        "connect_started",
        "connected",
        "deadline",
        "exchanges",
        "fd",
        "idle_since",
        "mask",
        "out",
        "pool",
        "sock",
        "timer_slot",
        "waiting",
    )

    def __init__(self, pool: H2Backends, backend: Backend, cluster: ClusterRuntime) -> None:
        loop = pool.loop
        self.pool = pool
        self.backend = backend
        self.cluster = cluster
        address = backend.address
        family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = cluster.backend_tls  # h2 over TLS (ALPN h2): mux/backend_tls.py
        self.sock = sock if tls is None else BackendTlsStream(tls, sock)
        self.fd = self.sock.fileno()
        from dataplane.proxy.http2.back import BackConnection  # h2 loads with the first one

        self.back = BackConnection(BACK_LIMITS, loop.h2_counters, loop.now)
        self.exchanges: dict[int, H2Exchange] = {}
        self.waiting: list[H2Exchange] = []  # streams to open once connected
        self.out = bytearray()
        self.connected = False
        self.closed = False
        self.connect_started = loop.now
        self.idle_since = loop.now
        self.mask = EPOLLOUT
        self.deadline = 0.0
        self.timer_slot = NOT_FILED

    def connect(self) -> int:
        try:
            return self.sock.connect_ex(self.backend.address.sockaddr())
        except OSError as error:
            return error.errno or errno.ECONNREFUSED

    @property
    def has_room(self) -> bool:
        return (
            not self.closed and self.back.can_open() and (self.connected or len(self.waiting) < 100)
        )

    # -- streams ---------------------------------------------------------------------------

    def open(self, exchange: H2Exchange) -> None:
        """Start `exchange`'s stream now, or once the connection is up."""
        if not self.connected:
            self.waiting.append(exchange)
            return
        self._open(exchange)

    def _open(self, exchange: H2Exchange) -> None:
        method, scheme, authority, path, fields = exchange.request
        end = exchange.request_ended and not exchange.body and exchange.trailers_out is None
        stream_id = self.back.open_stream(method, scheme, authority, path, fields, end)
        exchange.ended_sent = end
        exchange.stream_id = stream_id
        exchange.conn = self
        self.exchanges[stream_id] = exchange
        exchange.opened()
        self.pool.loop.flush_soon(self)

    def forget(self, exchange: H2Exchange, reset: bool) -> None:
        if exchange in self.waiting:
            self.waiting.remove(exchange)
        stream_id = exchange.stream_id
        if stream_id and self.exchanges.get(stream_id) is exchange:
            del self.exchanges[stream_id]
            if reset:
                self.back.reset(stream_id, ErrorCodes.CANCEL)
                self.flush()
        if not self.exchanges and not self.waiting:
            self.idle_since = self.pool.loop.now
            self._arm()

    # -- I/O -------------------------------------------------------------------------------

    def on_event(self, events: int) -> None:
        if self.closed:
            return
        loop = self.pool.loop
        if not self.connected:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            error = tls_step(loop, self, self.sock, self.cluster.cluster_id, self.backend, error)
            if error:
                if error != HANDSHAKING:
                    self._connect_failed()
                return
            self.connected = True
            backend_events.connect_succeeded(
                loop, self.cluster, self.backend, loop.now - self.connect_started
            )
            waiting, self.waiting = self.waiting, []
            for exchange in waiting:
                if self.back.can_open():
                    self._open(exchange)
                else:
                    exchange.retry()
            self.flush()
            return
        if events & EPOLLOUT:
            self.flush()
            if self.closed:
                return
        if events & ~EPOLLOUT:
            try:
                data = self.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close("the backend closed the connection")
                return
            self._dispatch(self.back.receive(data, loop.now))
            self.flush()

    def _dispatch(self, events: list[Event]) -> None:
        exchanges = self.exchanges
        for event in events:
            if isinstance(event, ConnectionClosed):
                self.flush()  # the GOAWAY saying why, best effort
                self.close(f"HTTP/2 connection error: {event.reason}")
                return
            stream_id = getattr(event, "stream_id", None)
            if isinstance(event, Sendable):
                targets = list(exchanges.values()) if not stream_id else [exchanges.get(stream_id)]
                for exchange in targets:
                    if exchange is not None:
                        exchange.writable()
                continue
            exchange = exchanges.get(stream_id) if stream_id is not None else None
            if exchange is None:
                if isinstance(event, Body):
                    self.back.consumed(event.stream_id, len(event.data))
                continue
            if isinstance(event, ResponseHead):
                exchange.response(event)
            elif isinstance(event, Body):
                exchange.body_received(event.data, event.end_stream)
            elif isinstance(event, Trailers):
                exchange.trailers(event.headers)
            elif isinstance(event, Informational):
                exchange.stream.informational(event.status, event.headers)
            elif isinstance(event, StreamReset):
                del exchanges[stream_id]  # type: ignore[arg-type]
                exchange.reset(event.code, refused=event.code == ErrorCodes.REFUSED_STREAM)
        if not exchanges and not self.waiting:
            self.idle_since = self.pool.loop.now
        self._arm()

    def flush(self) -> None:
        if self.closed or not self.connected:
            return
        data = self.back.data_to_send()
        out = self.out
        if data:
            out += data
        while out:
            try:
                sent = self.sock.send(out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close("write to the backend failed")
                return
            del out[:sent]
        mask = EPOLLIN | EPOLLOUT if out else EPOLLIN
        if mask != self.mask:
            self.mask = mask
            self.pool.loop.modify(self.fd, mask)

    def _connect_failed(self) -> None:
        loop = self.pool.loop
        backend_events.connect_failed(loop, self.cluster, self.backend)
        waiting, self.waiting = self.waiting, []
        self.close("connect failed", notify=False)
        for exchange in waiting:
            exchange.connect_failed(self.backend)

    # -- time and end ----------------------------------------------------------------------

    def _arm(self) -> None:
        if self.closed:
            return
        deadline = self.back.next_deadline() or INFINITY
        if not self.exchanges and not self.waiting:
            deadline = min(deadline, self.idle_since + IDLE_SECONDS)
        if not self.connected:
            deadline = min(deadline, self.connect_started + self.pool.connect_timeout(self))
        if deadline != INFINITY:
            self.pool.loop.timers.arm(self, deadline)

    def on_timeout(self, now: float) -> None:
        if self.closed:
            return
        if not self.connected:
            self._connect_failed()
            return
        self._dispatch(self.back.expired(now))
        if self.closed:
            return
        if not self.exchanges and not self.waiting and now >= self.idle_since + IDLE_SECONDS:
            self.back.close()  # GOAWAY, then the socket
            self.flush()
            self.close("idle")
            return
        self.flush()
        self._arm()

    def close(self, reason: str, notify: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.pool.loop
        self.pool.dropped(self)
        exchanges = list(self.exchanges.values()) + self.waiting
        self.exchanges.clear()
        self.waiting = []
        loop.forget(self.fd)
        loop.timers.cancel(self)
        self.sock.close()
        if self.connected:
            backend_events.connection_closed(loop, self.cluster.cluster_id, self.backend)
        if notify:
            for exchange in exchanges:
                exchange.connection_lost(reason)


class H2Backends:
    """A worker's h2c backend connections, per backend address."""

    def __init__(self, loop: Host) -> None:
        self.loop = loop
        self._conns: dict[SocketAddress, list[H2Backend]] = {}

    def __len__(self) -> int:
        return sum(len(conns) for conns in self._conns.values())

    def connect_timeout(self, conn: H2Backend) -> float:
        return float(conn.cluster.connect_timeout or 3)

    def connection(self, backend: Backend, cluster: ClusterRuntime) -> H2Backend | None:
        """A connection to `backend` with room for one more stream (opened if needed);
        None when the connect failed at once."""
        for conn in self._conns.get(backend.address, ()):
            if conn.backend is backend and conn.has_room:
                return conn
        conn = H2Backend(self, backend, cluster)
        code = conn.connect()
        if code not in (0, errno.EINPROGRESS):
            conn.sock.close()
            backend_events.connect_failed(self.loop, cluster, backend)
            return None
        self.loop.counters.backend_connections += 1
        self._conns.setdefault(backend.address, []).append(conn)
        self.loop.register(conn.fd, conn.on_event, EPOLLOUT)
        conn._arm()
        return conn

    def dropped(self, conn: H2Backend) -> None:
        conns = self._conns.get(conn.backend.address)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.backend.address]

    def close_all(self) -> None:
        for conns in list(self._conns.values()):
            for conn in list(conns):
                conn.close("the worker stops")


class H2Exchange:
    """One stream's request to an h2c backend (see the module docstring)."""

    __slots__ = (
        "body",
        "body_sent",
        "cluster",
        "conn",
        "deadline",
        "ended_sent",
        "failed",
        "held",
        "loop",
        "request",
        "request_ended",
        "responded",
        "retries",
        "sticky_id",
        "stream",
        "stream_id",
        "timer_slot",
        "trailers_out",
    )

    def __init__(
        self,
        stream: H2Stream | H1Stream,
        cluster: ClusterRuntime,
        request: tuple[bytes, bytes, bytes, bytes, Fields],
        sticky_id: str | None,
    ) -> None:
        self.stream = stream
        self.loop = stream.loop
        self.cluster = cluster
        self.request = request
        self.request_ended = stream.client_done
        self.sticky_id = sticky_id
        self.body: list[bytes] = []  # request body not sent yet (window, or not opened)
        self.trailers_out: Fields | None = None
        self.conn: H2Backend | None = None
        self.stream_id = 0
        self.ended_sent = False  # our END_STREAM went out
        self.body_sent = False  # some request body bytes went out (and cannot be sent again)
        self.failed: set[str] = set()
        self.held = 0  # response body bytes the client side has not taken yet
        self.responded = False
        self.retries = 0
        self.deadline = 0.0
        self.timer_slot = NOT_FILED

    def start(self) -> None:
        loop = self.loop
        cluster = self.cluster
        key = None
        if cluster.hash_key is not None:  # upstream-hash-by: the request's key
            request, client_ip = self.stream.hash_inputs()
            if request is not None:
                key = cluster.hash_key.key(request, client_ip, self.stream.session.listener.scheme)
        while len(self.failed) < MAX_CONNECT_TRIES:
            backend = next_backend(loop, cluster, self.sticky_id, self.failed, key)
            if backend is None:
                break
            conn = loop.h2_backends.connection(backend, cluster)
            if conn is None:
                self.failed.add(backend.backend_id)
                continue
            set_cookie = sticky_cookie_value(
                cluster, backend, self.sticky_id, self.stream.session.listener
            )
            self.stream.chose(conn, set_cookie)
            self.conn = conn
            conn.open(self)
            return
        self.stream.failed(503, "no backend available")

    def opened(self) -> None:
        """The stream exists on the connection: send what waits of the body."""
        conn = self.conn
        assert conn is not None
        conn.backend.active_requests += 1
        self._arm()
        self._send_body()

    def connect_failed(self, backend: Backend) -> None:
        self.failed.add(backend.backend_id)
        self.conn = None
        self.start()

    def retry(self) -> None:
        """The connection had no room after all (the backend's limit): another one."""
        self.conn = None
        self.stream_id = 0
        self.retries += 1
        if self.retries > MAX_CONNECT_TRIES:
            self.stream.failed(503, "no backend connection could take the stream")
            return
        self.start()

    # -- the request -----------------------------------------------------------------------

    def send_body(self, data: bytes, end: bool) -> None:
        if data:
            self.body.append(data)
        if end:
            self.request_ended = True
        self._send_body()

    def send_trailers(self, fields: Fields) -> None:
        self.trailers_out = fields
        self.request_ended = True
        self._send_body()

    def writable(self) -> None:
        self._send_body()

    def _send_body(self) -> None:
        conn = self.conn
        if conn is None or not self.stream_id:
            return
        back = conn.back
        body = self.body
        credited = 0
        while body:
            piece = body[0]
            last = len(body) == 1 and self.request_ended and self.trailers_out is None
            taken = back.send_body(self.stream_id, piece, last)
            credited += taken
            if taken < len(piece):
                body[0] = piece[taken:]
                break
            body.pop(0)
            if last:
                self.ended_sent = True
        if not body and self.request_ended and not self.ended_sent:
            if self.trailers_out is not None:
                back.send_trailers(self.stream_id, self.trailers_out)
                self.trailers_out = None
            else:
                back.end_stream(self.stream_id)
            self.ended_sent = True
        if credited:
            self.body_sent = True
            self.stream.body_forwarded(credited)
        self.loop.flush_soon(conn)

    # -- the response ----------------------------------------------------------------------

    def response(self, head: ResponseHead) -> None:
        self.responded = True
        self._arm()
        self.stream.respond(head.status, list(head.headers), head.end_stream)

    def body_received(self, data: bytes, end: bool) -> None:
        self._arm()
        if self.stream.data(data, end):
            self._credit(len(data))
        else:
            self.held += len(data)

    def trailers(self, fields: Fields) -> None:
        self.stream.trailers(list(fields))

    def resume(self) -> None:
        """The client side took what it held: give the backend that window back."""
        held, self.held = self.held, 0
        self._credit(held)

    def _credit(self, size: int) -> None:
        conn = self.conn
        if conn is not None and size and self.stream_id:
            conn.back.consumed(self.stream_id, size)
            self.loop.flush_soon(conn)

    def reset(self, code: int, refused: bool) -> None:
        """The backend reset the stream, or refused it after a GOAWAY: retried on another
        connection unless some of its body already went out (those bytes are gone)."""
        conn, self.conn = self.conn, None
        self.loop.timers.cancel(self)
        if conn is not None:
            conn.backend.active_requests -= 1
        if refused and not self.responded and not self.body_sent:
            self.stream_id = 0
            self.retry()
            return
        self.stream.failed(502, f"the backend reset the stream ({code})")

    def connection_lost(self, reason: str) -> None:
        conn, self.conn = self.conn, None
        self.loop.timers.cancel(self)
        if conn is not None and self.stream_id:
            conn.backend.active_requests -= 1
        self.stream.failed(502, reason)

    # -- the backend's timeout -------------------------------------------------------------

    def _arm(self) -> None:
        timeout = self.cluster.back_timeout or self.stream.session.listener.back_timeout
        self.loop.timers.arm(self, self.loop.now + timeout)

    def on_timeout(self, now: float) -> None:
        """back_timeout without a byte from the backend: 504 (or a cut response). Not while
        the request is still coming (the client's pace: its own timeouts) or the client side
        holds response bytes (the client's pace too)."""
        if self.conn is None or not self.stream_id:
            return
        if self.held or not self.ended_sent:
            self._arm()
        else:
            self.loop.counters.timeouts += 1
            self.stream.failed(504, "backend timeout")  # which cancels (resets) the stream

    # -- ends ------------------------------------------------------------------------------

    def done(self) -> None:
        self._release(reset=False)

    def cancel(self) -> None:
        self._release(reset=True)

    def _release(self, reset: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        self.loop.timers.cancel(self)
        if self.stream_id:
            conn.backend.active_requests -= 1
        conn.forget(self, reset)
