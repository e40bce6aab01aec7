"""One client connection speaking HTTP/2: ALPN `h2` on an HTTPS listener, or h2c with prior
knowledge on a clear-text listener that sets `h2c = true`.

The connection is a `FrontConnection` (http2/, sans-IO) plus the socket: bytes read go in,
the events it makes are dispatched to `H2Stream`s (one per request, h2_stream.py), and what
it has to send is written out, as much as the socket takes (EPOLLOUT for the rest). Streams
send through the same `FrontConnection`, within the flow-control windows the client grants;
a stream that may not send more waits for a `Sendable` event, and its backend is not read
meanwhile, so a slow client costs a bounded amount of memory.

Timers: the connection is on the worker's timer wheel once, at the earliest of the stream
reaper's deadline (`h2_stream_idle_timeout_seconds`), the graceful shutdown's steps, and the
idle timeout (`front_timeout`, when no stream is open). A soft stop begins sozu's double
GOAWAY; the connection closes once the final GOAWAY is sent and no stream is left, or at
`h2_graceful_shutdown_deadline_seconds`.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import select
import socket
from typing import TYPE_CHECKING, Any, Final, Protocol

from dataplane.proxy.http2 import (
    Body,
    ConnectionClosed,
    Event,
    RequestHead,
    Sendable,
    StreamReset,
    Trailers,
)
from dataplane.proxy.mux.h2_stream import H2Stream
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.forwarding import ConnectionContext
    from dataplane.proxy.listener import HttpListener
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.mux.session_fields import SniCheck
    from dataplane.proxy.observability.metrics import ListenerFigures
    from dataplane.proxy.proxy_protocol.header import Peer

log = logging.getLogger("dataplane.worker")

EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT
READ_SIZE: Final = 65_536
MAX_READS: Final = 16  # reads per readiness event before other connections get their turn
MAX_PIECES: Final = 512  # pieces per sendmsg (within IOV_MAX); more are joined into one
LINGER_SECONDS: Final = 2.0  # after a GOAWAY that ends the connection: the client's bytes drained
_READ = bytearray(READ_SIZE)  # one read buffer for every connection of the worker
_READ_VIEW = memoryview(_READ)
INFINITY: Final = float("inf")


class Transport(Protocol):
    """A client socket, or a `TlsStream` over one."""

    def fileno(self) -> int: ...
    def recv_into(self, view: memoryview) -> int: ...
    def sendmsg(self, parts: list[Any]) -> int: ...
    def close(self) -> None: ...


class H2Session:
    __slots__ = (
        "closed",
        "clusters",
        "context",
        "deadline",
        "fd",
        "figures",
        "front",
        "gather",
        "idle_since",
        "lingering",
        "listener",
        "loop",
        "mask",
        "out",
        "sni_binding",
        "sock",
        "streams",
        "timer_slot",
    )

    def __init__(
        self,
        loop: Host,
        listener: HttpListener,
        sock: Transport,
        peer: Peer | None,
        sni_binding: SniCheck | None = None,
        context: ConnectionContext | None = None,
    ) -> None:
        """`peer` (None: `context` is given, the connection was accepted as HTTP/1.1). No I/O
        here: the owner counts the session among the worker's (`figures`, `sessions`), then
        calls `start`, which may read, answer and even close it at once."""
        self.loop = loop
        self.listener = listener
        self.sock = sock
        self.fd = sock.fileno()
        kind = type(sock)  # a plain socket (h2c) writes h2's frames as they are
        self.gather = kind is _socket.socket or kind is socket.socket
        if context is None:
            assert peer is not None
            context = listener.connection_context(peer)
        self.context = context
        self.clusters: set[str] = set()  # counted against their max_connections_per_ip
        self.sni_binding = sni_binding
        self.figures: ListenerFigures | None = None  # set by the acceptor
        # the h2 library's state machine (1.4 MB of memory) loads with the first connection
        from dataplane.proxy.http2.front import FrontConnection

        self.front = FrontConnection(listener.h2_limits, loop.h2_counters, loop.now)
        self.streams: dict[int, H2Stream] = {}
        self.out = bytearray()
        self.mask = EPOLLIN
        self.closed = False
        self.lingering = 0.0  # set: the connection is ending (see _linger), until then
        self.idle_since = loop.now
        self.deadline = 0.0
        self.timer_slot = NOT_FILED

    def start(self, received: bytes = b"") -> None:
        """Register the socket, take `received` (bytes read before the connection was known
        to speak HTTP/2: h2c), send the server's preface, and read what TLS has decrypted
        already. A client gone by then (EOF with the handshake's last bytes) closes the
        session here, counted out as any other (a session started before it was counted
        once stayed counted, and held a soft stop forever)."""
        loop = self.loop
        loop.register(self.fd, self.on_front, EPOLLIN)
        if received:
            self._dispatch(self.front.receive(received, loop.now))
        if self.closed:
            return
        self.flush()
        if self.closed:
            return
        if getattr(self.sock, "pending", None) is not None:
            self.on_front(EPOLLIN)  # TLS: the client's first bytes may be decrypted already
            if self.closed:
                return
        self._arm()

    # -- reading ---------------------------------------------------------------------------

    def on_front(self, events: int) -> None:
        if self.closed:
            return
        if events & EPOLLOUT:
            self.flush()
            if self.closed:
                return
        if self.lingering:
            if events & ~EPOLLOUT:
                self._drain()
            return
        if events & ~EPOLLOUT:
            sock = self.sock
            pending = getattr(sock, "pending", None)
            for _ in range(MAX_READS):
                try:
                    received = sock.recv_into(_READ_VIEW)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    received = 0
                if not received:
                    self.close()
                    return
                self._dispatch(self.front.receive(bytes(_READ_VIEW[:received]), self.loop.now))
                if self.closed:
                    return
                if not self.streams:  # the idle timeout counts from the client's last bytes
                    self.idle_since = self.loop.now
                if received < READ_SIZE and (pending is None or not pending()):
                    break
        self.loop.flush_soon(self)  # once, with what the streams answer this turn
        self._arm()

    def _dispatch(self, events: list[Event]) -> None:
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind is Body:
                assert isinstance(event, Body)
                stream = streams.get(event.stream_id)
                if stream is None:
                    self.front.consumed(event.stream_id, len(event.data))
                else:
                    stream.client_body(event.data, event.end_stream)
            elif kind is RequestHead:
                assert isinstance(event, RequestHead)
                stream = H2Stream(self, event)
                streams[event.stream_id] = stream
                stream.start()
            elif kind is Sendable:
                assert isinstance(event, Sendable)
                if event.stream_id:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream.writable()
                else:
                    for stream in list(streams.values()):
                        stream.writable()
            elif kind is Trailers:
                assert isinstance(event, Trailers)
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.client_trailers(event.headers)
            elif kind is StreamReset:
                assert isinstance(event, StreamReset)
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.reset_by_client(event.code, event.remote)
            elif kind is ConnectionClosed:
                assert isinstance(event, ConnectionClosed)
                if event.code:
                    log.debug("h2 connection %s closed: %s", self.context.client_address, event)
                self._linger()
                return
            # GoAwayReceived: the client opens no new stream; the open ones finish.

    # -- streams -------------------------------------------------------------------------

    def stream_done(self, stream: H2Stream) -> None:
        """A stream is over (answered and its request read, or reset)."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            if not self.streams:
                self.idle_since = self.loop.now

    def bind_cluster(self, cluster: ClusterRuntime) -> int | None:
        """Count this connection against (client IP, cluster) once, as an HTTP/1.1 one is:
        None, or (refused: the address has too many connections there) the 429's Retry-After
        seconds (0: none)."""
        cluster_id = cluster.cluster_id
        if cluster_id in self.clusters:
            return None
        proxy = self.listener.proxy
        key = (self.context.peer_ip.decode("ascii"), cluster_id)
        limit = cluster.max_connections_per_ip or proxy.max_connections_per_ip
        if limit and proxy.peer_count(key) >= limit:
            return cluster.retry_after or proxy.retry_after
        proxy.acquire_peer(key)
        self.clusters.add(cluster_id)
        return None

    # -- writing -------------------------------------------------------------------------

    def flush_soon(self) -> None:
        self.loop.flush_soon(self)

    def flush(self) -> None:
        """Write what the connection has to send; EPOLLOUT while the socket is full."""
        if self.closed:
            return
        out = self.out
        if self.gather:
            self._gather(out)
            if self.closed:
                return
            data = b""
        else:
            data = self.front.data_to_send()  # joined: TLS encrypts it in records
        if data:
            if out:
                out += data
            else:  # the usual case: written from h2's bytes, without a copy into `out`
                try:
                    sent = self.sock.sendmsg([data])
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self.close()
                    return
                if sent < len(data):
                    out += memoryview(data)[sent:]
        while out:
            try:
                sent = self.sock.sendmsg([out])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            if not sent:
                break
            del out[:sent]
        mask = EPOLLIN | EPOLLOUT if out else EPOLLIN
        if mask != self.mask:
            self.mask = mask
            self.loop.modify(self.fd, mask)
        if not out and self.front.done and not self.lingering:
            self.close()  # a graceful shutdown (ours or the client's) is complete

    def _gather(self, out: bytearray) -> None:
        """A plain socket: h2's frames written as pieces (sendmsg gathers them), the bodies
        not copied; what the socket does not take waits in `out`."""
        pieces = self.front.pieces_to_send()
        if not pieces:
            return
        if out or len(pieces) > MAX_PIECES:
            out += b"".join(pieces)
            return
        try:
            sent = self.sock.sendmsg(pieces)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        for piece in pieces:  # the rest, if any, in order
            size = len(piece)
            if sent >= size:
                sent -= size
            else:
                out += memoryview(piece)[sent:] if sent else piece
                sent = 0

    # -- time ----------------------------------------------------------------------------

    def _arm(self) -> None:
        if self.closed or self.lingering:
            return
        deadline = self.front.next_deadline() or INFINITY
        if not self.streams:
            deadline = min(deadline, self.idle_since + self.listener.front_timeout)
        if deadline != INFINITY:
            self.loop.timers.arm(self, deadline)

    def on_timeout(self, now: float) -> None:
        if self.closed:
            return
        if self.lingering:
            self.close()  # the client kept sending, or never closed: enough
            return
        self._dispatch(self.front.expired(now))
        if self.closed:
            return
        if not self.streams and now >= self.idle_since + self.listener.front_timeout:
            self.loop.counters.timeouts += 1
            self.front.goodbye()  # idle: one GOAWAY, then close
            self.flush()
            self.close()
            return
        self.flush()
        self._arm()

    def soft_stop(self) -> None:
        """Worker shutdown: sozu's double GOAWAY; streams in flight finish."""
        if self.closed:
            return
        self.front.shutdown(self.loop.now)
        self.flush()
        self._arm()

    # -- end -----------------------------------------------------------------------------

    def _linger(self) -> None:
        """A GOAWAY ended the connection (a flood, a protocol error): its streams go, the
        GOAWAY is sent, and the client's bytes are read and dropped until it closes (as a
        client does on a GOAWAY with an error) or LINGER_SECONDS pass. Closing with unread
        bytes would send a RST, which can destroy the GOAWAY before the client has read it
        (nginx's lingering close). The write side stays open: shutting it on TLS would send
        close_notify and end the TLS layer that the draining reads through."""
        if self.closed or self.lingering:
            return
        for stream in list(self.streams.values()):
            stream.connection_lost()
        self.streams.clear()
        self.lingering = self.loop.now + LINGER_SECONDS
        self.flush()
        if not self.closed:
            self.loop.timers.arm(self, self.lingering)

    def _drain(self) -> None:
        for _ in range(MAX_READS):
            try:
                received = self.sock.recv_into(_READ_VIEW)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                received = 0
            if not received:
                self.close()
                return

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.loop
        for stream in list(self.streams.values()):
            stream.connection_lost()
        self.streams.clear()
        ip = self.context.peer_ip.decode("ascii")
        for cluster_id in self.clusters:
            self.listener.proxy.release_peer((ip, cluster_id))
        self.clusters.clear()
        loop.forget(self.fd)
        loop.timers.cancel(self)
        with contextlib.suppress(OSError):
            self.sock.close()
        loop.session_closed(self)
