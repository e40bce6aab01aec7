"""A proxied TCP connection: a backend picked and connected, then bytes relayed both ways.

```
accept -> CONNECTING --connected--> RELAY --both FINs passed on, or error, or idle--> CLOSED
            |  connect_timeout / refused: the next backend (4 tries in all), then closed
```

- **Backend**: the listener's cluster's load balancer picks one (weights, backups, the
  circuit breaker; hashing algorithms key on the client IP), the connect runs with the
  listener's `connect_timeout`, and a failure is reported (`backend_events`) and another
  backend tried. No backend, no cluster, or the per-(client IP, cluster) limit reached: the
  client connection is closed before any backend is contacted, as sozu does.
- **Relay**: each direction (`Pipe`) reads into a buffer lent by the worker's `BufferPool` only
  when its source is readable (a relay buffer both ways: 128 KiB reads moved 2-4x the bytes per
  second of `buffer_size` ones in a bulk upload here), sends what it read at once, and while
  the destination has not taken it all, stops reading its source (back-pressure: memory per
  connection is one buffer per direction, whatever the transfer's size). Buffers holding no
  byte go back at the pool's sweep.
- **Half-close**: a FIN from one side is passed on (`shutdown(SHUT_WR)` on the other) once
  the bytes before it are sent; the other direction carries on. Both FINs passed on: closed.
- **Timeouts**: `front_timeout` without client activity, `back_timeout` without backend
  activity (reads or writes), checked on the timer wheel; activity only stamps a time.
- **Soft stop**: nothing is cut; the worker exits once the last connection ends (main's drain
  deadline, if one was given, stops it hard).

A socket with nothing to wait for (a FIN read and nothing to send it, or back-pressure) is
taken out of the epoll set rather than left with an empty mask: epoll reports hang-ups
whatever the mask, and a level-triggered hang-up would spin.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from typing import TYPE_CHECKING, Protocol

from dataplane.command.messages import ProxyProtocolConfig
from dataplane.proxy.buffers import NO_BUFFER, NO_VIEW, Buffer
from dataplane.proxy.mux import backend_events
from dataplane.proxy.mux.session_fields import (
    EPOLLERR,
    EPOLLHUP,
    EPOLLIN,
    EPOLLOUT,
    MAX_CONNECT_TRIES,
)
from dataplane.proxy.observability.access_log_format import AccessRecord
from dataplane.proxy.proxy_protocol.header import ProxiedPeer, v2_header
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.command.address import SocketAddress
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.mux.backend_pool import BackendConnection
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures

log = logging.getLogger("dataplane.worker")

CONNECTING = 0
RELAY = 1
CLOSED = 2
SENT_HEADERS = (ProxyProtocolConfig.SEND_HEADER, ProxyProtocolConfig.RELAY_HEADER)


class _Addressed(Protocol):
    @property
    def address(self) -> SocketAddress: ...


class TcpRoute(Protocol):
    """What a session reads of where it was accepted: a TCP listener, or a TLS passthrough
    frontend of an HTTPS listener (tls/passthrough.py)."""

    @property
    def cluster_id(self) -> str | None: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def config(self) -> _Addressed: ...
    @property
    def front_timeout(self) -> float: ...
    @property
    def back_timeout(self) -> float: ...
    @property
    def connect_timeout(self) -> float: ...


class Pipe:
    """One direction's bytes: those read from its source and not yet sent to its destination."""

    __slots__ = ("buffer", "done", "end", "eof", "moved", "relay", "start", "starved", "view")

    def __init__(self, relay: bool) -> None:
        self.relay = relay  # lent from the relay free list, else the client one
        self.buffer: Buffer = NO_BUFFER
        self.view = NO_VIEW
        self.start = self.end = 0
        self.eof = False  # the source sent its FIN
        self.done = False  # ... and it was passed on: the destination is shut for writing
        self.starved = False  # no buffer to read into: waiting for one
        self.moved = 0  # bytes relayed

    def wants_read(self) -> bool:
        return not (self.eof or self.starved or self.end)


class TcpSession:
    """One client connection of a TCP listener and its backend connection."""

    __slots__ = (
        "back",
        "back_at",
        "back_fd",
        "back_mask",
        "backend_id",
        "cluster",
        "deadline",
        "down",
        "failed",
        "figures",
        "front",
        "front_at",
        "front_fd",
        "front_mask",
        "listener",
        "loop",
        "message",
        "peer",
        "peer_key",
        "phase",
        "started",
        "timer_slot",
        "up",
    )

    def __init__(
        self,
        loop: Host,
        listener: TcpRoute,
        sock: socket.socket,
        peer: tuple[str, int],
        figures: ListenerFigures | None = None,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.front = sock
        self.front_fd = sock.fileno()
        self.front_mask = 0
        self.peer = peer
        self.figures = figures
        self.cluster: ClusterRuntime | None = None
        self.peer_key: tuple[str, str] | None = None
        self.back: BackendConnection | None = None
        self.back_fd = -1
        self.back_mask = 0
        self.backend_id: str | None = None
        self.failed: set[str] = set()
        self.up = Pipe(relay=True)  # client to backend
        self.down = Pipe(relay=True)  # backend to client
        self.phase = CONNECTING
        self.started = self.front_at = self.back_at = loop.now
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        self.message: str | None = None  # why the proxy ended it (access log), None: the ends

    # -- start: cluster, limits, backend -------------------------------------------------------

    def start(self) -> None:
        """Called once the session is counted in `loop.sessions` (it may close at once)."""
        loop = self.loop
        tcp = loop.proxy.tcp
        tcp.figures.accepted += 1
        tcp.figures.active += 1
        cluster_id = self.listener.cluster_id
        cluster = loop.proxy.clusters.get(cluster_id) if cluster_id is not None else None
        if cluster is None:
            tcp.figures.no_cluster += 1
            self.close()
            return
        proxy = loop.proxy
        key = (self.peer[0], cluster.cluster_id)
        limit = cluster.max_connections_per_ip or proxy.max_connections_per_ip
        if limit and proxy.peer_count(key) >= limit:
            tcp.figures.per_ip_refused += 1
            self.close()
            return
        proxy.acquire_peer(key)
        self.peer_key = key
        self.cluster = cluster
        self._connect()

    def _connect(self) -> None:
        loop = self.loop
        cluster = self.cluster
        assert cluster is not None
        key = self.peer[0].encode()
        while len(self.failed) < MAX_CONNECT_TRIES:
            backend = cluster.backends.select(loop.now, key=key, exclude=frozenset(self.failed))
            if backend is None:
                break
            conn = loop.pool.open(backend, cluster.cluster_id)
            code = conn.connect()
            if code in (0, errno.EINPROGRESS):
                loop.counters.backend_connections += 1
                self.back = conn
                self.back_fd = conn.fd
                self.back_mask = EPOLLOUT
                loop.register(conn.fd, self.on_back, EPOLLOUT)
                timeout = cluster.connect_timeout or self.listener.connect_timeout
                loop.timers.arm(self, loop.now + timeout)
                return
            conn.sock.close()
            backend_events.connect_failed(loop, cluster, backend)
            self.failed.add(backend.backend_id)
        loop.proxy.tcp.figures.no_backend += 1
        self.message = "no backend available"
        log.debug("tcp %s: no backend available for %s", self.listener.config.address, self.peer)
        self.close()

    def _connect_failed(self) -> None:
        back = self.back
        assert back is not None and self.cluster is not None
        backend_events.connect_failed(self.loop, self.cluster, back.backend)
        self.failed.add(back.backend.backend_id)
        back.close()
        self.back = None
        self.back_fd = -1
        self.back_mask = 0
        self._connect()

    def _connected(self) -> None:
        loop = self.loop
        back = self.back
        assert back is not None and self.cluster is not None
        backend_events.connect_succeeded(
            loop, self.cluster, back.backend, loop.now - back.connect_started
        )
        back.connected = True  # its close reports the connection's end to the backend
        if self.cluster.config.proxy_protocol in SENT_HEADERS and not self._send_proxy_header():
            return  # send_proxy: a PROXY v2 header first (could not be sent: closed)
        self.backend_id = back.backend.backend_id
        self.phase = RELAY
        loop.proxy.tcp.figures.relayed += 1
        self.front_at = self.back_at = loop.now
        self._arm_idle()
        self._update_masks()

    # -- events ---------------------------------------------------------------------------------

    def on_front(self, events: int) -> None:
        if events & EPOLLOUT and self.down.end and not self._send(self.down, self.front, True):
            return
        if events & ~EPOLLOUT and self.up.wants_read():
            self._read(self.up, self.front, True)
        elif events & (EPOLLERR | EPOLLHUP):  # registered, nothing to do: the peer is gone
            self.close()
            return
        self._update_masks()

    def on_back(self, events: int) -> None:
        if self.phase == CONNECTING:
            back = self.back
            assert back is not None
            if back.connect_error() or events & EPOLLERR:
                self._connect_failed()
            else:
                self._connected()
            return
        back = self.back
        assert back is not None
        if events & EPOLLOUT and self.up.end and not self._send(self.up, back.sock, False):
            return
        if events & ~EPOLLOUT and self.down.wants_read():
            self._read(self.down, back.sock, False)
        elif events & (EPOLLERR | EPOLLHUP):
            self.close()
            return
        self._update_masks()

    def _read(self, pipe: Pipe, src: socket.socket, from_front: bool) -> None:
        """Read once from `src` into `pipe` and send it on at once."""
        if pipe.buffer is NO_BUFFER:
            buffers = self.loop.buffers
            pair = buffers.take_relay(self) if pipe.relay else buffers.take_client(self)
            if pair is None:
                pipe.starved = True
                buffers.wait(self._wake)
                return
            pipe.buffer, pipe.view = pair
        try:
            count = src.recv_into(pipe.view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if from_front:
            self.front_at = self.loop.now
        else:
            self.back_at = self.loop.now
        back = self.back
        assert back is not None
        dst = back.sock if from_front else self.front
        if not count:
            pipe.eof = True
            self._pass_fin(pipe, dst)
            return
        pipe.start, pipe.end = 0, count
        pipe.moved += count
        self._send(pipe, dst, not from_front)

    def _send(self, pipe: Pipe, dst: socket.socket, to_front: bool) -> bool:
        """Send what `pipe` holds; False once the session closed."""
        try:
            sent = dst.send(pipe.view[pipe.start : pipe.end])
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self.close()
            return False
        if to_front:
            self.front_at = self.loop.now
        else:
            self.back_at = self.loop.now
        pipe.start += sent
        if pipe.start == pipe.end:
            pipe.start = pipe.end = 0
            if pipe.eof:
                return self._pass_fin(pipe, dst)
        return True

    def _pass_fin(self, pipe: Pipe, dst: socket.socket) -> bool:
        """The source's FIN goes on once its bytes are sent; False once the session closed."""
        if pipe.end or pipe.done:
            return True
        pipe.done = True
        with contextlib.suppress(OSError):  # gone: the other direction finds out by itself
            dst.shutdown(socket.SHUT_WR)
        if self.up.done and self.down.done:
            self.close()
            return False
        return True

    def _update_masks(self) -> None:
        if self.phase != RELAY:
            return
        up, down = self.up, self.down
        front = (EPOLLIN if up.wants_read() else 0) | (EPOLLOUT if down.end else 0)
        back = (EPOLLIN if down.wants_read() else 0) | (EPOLLOUT if up.end else 0)
        loop = self.loop
        if front != self.front_mask:
            if not self.front_mask:
                loop.register(self.front_fd, self.on_front, front)
            elif not front:
                loop.unregister(self.front_fd)
            else:
                loop.modify(self.front_fd, front)
            self.front_mask = front
        if back != self.back_mask:
            if not self.back_mask:
                loop.register(self.back_fd, self.on_back, back)
            elif not back:
                loop.unregister(self.back_fd)
            else:
                loop.modify(self.back_fd, back)
            self.back_mask = back

    def _wake(self) -> bool:
        """A buffer came back to the pool: read again (False: closed meanwhile)."""
        if self.phase == CLOSED:
            return False
        self.up.starved = self.down.starved = False
        self._update_masks()
        return True

    # -- buffers, timeouts, stop ------------------------------------------------------------

    def release_idle_buffers(self) -> bool:
        """`buffers.Holder`: give back the buffers holding no byte; True once none is held."""
        buffers = self.loop.buffers
        for pipe in (self.up, self.down):
            if pipe.buffer is not NO_BUFFER and not pipe.end:
                if pipe.relay:
                    buffers.give_relay(pipe.buffer, pipe.view)
                else:
                    buffers.give_client(pipe.buffer, pipe.view)
                pipe.buffer, pipe.view = NO_BUFFER, NO_VIEW
        return self.up.buffer is NO_BUFFER and self.down.buffer is NO_BUFFER

    def _arm_idle(self) -> None:
        listener = self.listener
        due = min(self.front_at + listener.front_timeout, self.back_at + listener.back_timeout)
        self.loop.timers.arm(self, due)

    def on_timeout(self, now: float) -> None:
        if self.phase == CONNECTING:
            if self.back is not None:
                self._connect_failed()  # connect_timeout: the next backend
            return
        if self.phase == CLOSED:
            return
        listener = self.listener
        if (
            now >= self.front_at + listener.front_timeout
            or now >= self.back_at + listener.back_timeout
        ):
            self.loop.proxy.tcp.figures.timeouts += 1
            front_idle = now >= self.front_at + listener.front_timeout
            self.message = "client_timeout" if front_idle else "backend_timeout"
            self.close()
        else:
            self._arm_idle()

    def soft_stop(self) -> None:
        """Nothing to cut: the connection ends when its ends say so (or time out)."""

    def close(self) -> None:
        if self.phase == CLOSED:
            return
        self.phase = CLOSED
        loop = self.loop
        if self.cluster is not None and (loop.access_log or loop.error_access_log):
            self._access_log()  # (before the backend connection goes: its address is logged)
        loop.timers.cancel(self)
        self.up.end = self.down.end = 0  # no byte is kept: every buffer goes back
        self.release_idle_buffers()
        if self.back is not None:
            self.back.close()  # unregisters it; reports the connection's end when connected
            self.back = None
        loop.forget(self.front_fd)  # closing it takes it out of the epoll set
        self.front.close()
        if self.peer_key is not None:
            loop.proxy.release_peer(self.peer_key)
            self.peer_key = None
        self._count()
        loop.session_closed(self)

    def _count(self) -> None:
        loop = self.loop
        up, down = self.up.moved, self.down.moved
        figures = loop.proxy.tcp.figures
        figures.active -= 1
        figures.bytes_in += up
        figures.bytes_out += down
        if not loop.metrics_enabled or self.cluster is None:
            return
        cluster = loop.metrics.cluster(self.cluster.cluster_id)
        cluster.bytes_in += up
        cluster.bytes_out += down
        if self.backend_id is not None:
            backend = cluster.backend(self.backend_id)
            backend.bytes_in += up
            backend.bytes_out += down

    # -- send_proxy (SEND_HEADER, or RELAY_HEADER with an expect_proxy listener) ------------

    def _send_proxy_header(self) -> bool:
        """The backend first gets a PROXY v2 header: the client's address (the one a PROXY
        header from the client carried, when the listener expects one: relayed) and the
        address it connected to. False: it could not be sent, the session is closed."""
        peer = self.peer
        destination = peer.public if isinstance(peer, ProxiedPeer) else None
        try:
            if destination is None:
                destination = self.front.getsockname()
            source = (peer[0], peer[1])
            if (":" in source[0]) == (":" in destination[0]):
                header = v2_header(source, (destination[0], destination[1]))
            else:
                header = v2_header(None)  # mixed families: no address (UNSPEC)
            back = self.back
            assert back is not None
            if back.sock.send(header) != len(header):  # a few dozen bytes, fresh socket
                raise ConnectionError("PROXY header cut short")
        except OSError as error:
            log.warning("tcp %s: PROXY header not sent: %s", self.listener.config.address, error)
            self.close()
            return False
        self.loop.proxy.tcp.figures.proxy_headers_sent += 1
        return True

    # -- access log (one line per relayed connection, sozu's TCP shape) --------------------

    def _access_log(self) -> None:
        """`... <client> <backend> <time>/... <bytes in> <bytes out> [<tags>] None TCP - - - -`
        at info level, or error level with a message (`client_timeout`, `backend_timeout`,
        `no backend available`) when the proxy ended the connection."""
        loop = self.loop
        logs = loop.error_access_log if self.message is not None else loop.access_log
        if logs is None:
            return
        back = self.back
        backend = None if back is None else back.backend
        peer = self.peer
        host = f"[{peer[0]}]" if ":" in peer[0] else peer[0]
        record = AccessRecord(
            session_id="%X" % id(self),  # noqa: UP031 (as HTTP sessions)
            cluster_id=self.cluster.cluster_id if self.cluster is not None else None,
            backend_id=self.backend_id,
            client_address=f"{host}:{peer[1]}",
            backend_address=str(backend.address) if backend is not None else None,
            protocol="TCP",
            request_time=loop.now - self.started,
            bytes_in=self.up.moved,
            bytes_out=self.down.moved,
            tags=self.listener.tags or None,
            message=self.message,
        )
        logs.stream_line(record, self.message)
