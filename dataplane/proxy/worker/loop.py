"""The worker's event loop: one thread, one epoll, every socket of the process.

Each registered descriptor maps to one callable taking the epoll event mask: the channel to
main, listening sockets (accept), client connections and backend connections (sessions),
idle pooled backend connections. `now` is read once per loop turn and shared by everything;
the timer wheel fires at most once per second. A handler that raises is logged and its
connection closed: no bug in one session takes the worker down.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Protocol

from dataplane.command.address import SocketAddress
from dataplane.command.channel import Channel, ChannelError
from dataplane.command.logs import reopen_log_file
from dataplane.command.messages import MetricDetail, ServerConfig, WorkerRequest
from dataplane.command.responses import WorkerResponse
from dataplane.command.scm import Listeners, ScmError, receive_listeners, send_listeners
from dataplane.command.state import ConfigState
from dataplane.proxy.buffers import BufferPool
from dataplane.proxy.clusters import HttpProxy
from dataplane.proxy.health.checks import HealthChecks
from dataplane.proxy.http1.forwarding import RequestIds
from dataplane.proxy.http1.head import ResponseParser
from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.listener import HttpListener, accept_streams, bind_listener
from dataplane.proxy.mux.backend_pool import RELAY_BUFFER_SIZE, BackendPool
from dataplane.proxy.mux.h2_backends import H2Backends
from dataplane.proxy.mux.host import Flushable, Host
from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import NOT_FILED, SOON
from dataplane.proxy.observability.counters import Counters, ProxyProtocolFigures
from dataplane.proxy.observability.metrics import ListenerFigures, MetricsRegistry
from dataplane.proxy.proxy_protocol.accept import accept_proxied
from dataplane.proxy.tcp.accept import accept_handler
from dataplane.proxy.tcp.listener import TcpListener
from dataplane.proxy.timers import Timed, TimerWheel
from dataplane.proxy.tls.listener import HttpsListener, tls_acceptor, tls_counters, tls_gauges
from dataplane.proxy.udp.proxy import UdpProxy, scm_key
from dataplane.proxy.worker.eviction import Eviction
from dataplane.proxy.worker.heap import HeapTrimmer
from dataplane.proxy.worker.request_ends import RequestEnds

if TYPE_CHECKING:
    from dataplane.proxy.proxy_protocol.header import Peer
    from dataplane.proxy.worker.access_logs import WorkerAccessLogs

log = logging.getLogger("dataplane.worker")

EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT
RESUME_ACCEPT_RATIO: Final = 0.9
# Events taken per epoll_wait: CPython's `epoll.poll` allocates its event array per call
# (12 bytes an event; its default, 1,023 events, is a 12 KiB malloc and free per call, ~2,500
# instructions under the workers' glibc allocator). 64 events fit glibc's per-thread cache.
# A readier set is served over several calls (nginx takes 512 at a time).
MAX_EVENTS: Final = 64
FILE_SOON_MAX: Final = 1024  # new sessions waiting to be filed in the wheel before the next tick


class ClientConnection(Protocol):
    """What the loop keeps of a client connection: an HttpSession, an H2Session, a TcpSession,
    or one not yet either (TlsHandshake, SniPeek, ProxyHeaderReader). A protocol, not
    HttpSession: the compiled build checks argument and loop-variable types at run time."""

    @property
    def figures(self) -> ListenerFigures | None: ...

    def soft_stop(self) -> None: ...

    def close(self) -> None: ...


def file_waiting(timers: TimerWheel, waiting: Iterable[Timed]) -> None:
    """File in the wheel, with their deadlines as they are now, the entries of `waiting`
    still SOON (`Loop.file_soon`): those that closed meanwhile are NOT_FILED, and dropped."""
    for entry in waiting:
        if entry.timer_slot == SOON:
            entry.timer_slot = NOT_FILED
            timers.arm(entry, entry.deadline)


class Loop(Host):
    def __init__(
        self, config: ServerConfig, channel: Channel[WorkerRequest], scm: socket.socket
    ) -> None:
        self.config = config
        self.epoll = select.epoll()
        # Its methods, bound once: a call through a bound method skips the lookup by name
        # that `self.epoll.register(...)` costs compiled (~200 instructions a connection).
        self._epoll_register = self.epoll.register
        self._epoll_modify = self.epoll.modify
        self.handlers = {}
        self.handed_fd = -1  # a descriptor between two handlers (hand_over), kept in epoll
        self.handed_mask = 0
        self.now = time.monotonic()
        self.timers = TimerWheel(self.now)
        self.counters = Counters()
        self.h2_counters = H2Counters()
        self.to_flush: set[Flushable] = set()  # see flush_soon
        self.to_file: set[Timed] = set()  # see file_soon
        self.metrics = MetricsRegistry()
        self.metrics_enabled = True
        metrics_config = config.metrics
        self.metric_detail = (
            metrics_config.detail
            if metrics_config is not None and metrics_config.detail is not None
            else MetricDetail.DETAIL_CLUSTER
        )
        self.metrics.counter_sources.append(self.counters.snapshot)
        self.metrics.counter_sources.append(lambda: dict(self.h2_counters))
        self.metrics.gauge_sources.append(self._gauges)
        self.metrics.counter_sources.append(lambda: tls_counters(self.proxy))
        self.metrics.gauge_sources.append(lambda: tls_gauges(self.proxy))
        self.proxy_protocol = ProxyProtocolFigures()  # expect_proxy listeners' headers
        self.metrics.counter_sources.append(self.proxy_protocol.snapshot)
        self.buffer_size = max(config.buffer_size, 4096)
        self.buffers = BufferPool(
            self.buffer_size,
            max(self.buffer_size, RELAY_BUFFER_SIZE),
            config.min_buffers,
            config.max_buffers,
        )
        self.pool = BackendPool(self)
        self.h2_backends = H2Backends(self)  # h2c connections to `http2` clusters' backends
        self.heap = HeapTrimmer()
        self.own_request_ids = RequestIds()  # refreshed at each tick
        self.request_ids = self.own_request_ids
        self.response_parser = ResponseParser()
        self.state = ConfigState()
        self.proxy = HttpProxy(config.max_connections_per_ip or 0, config.retry_after or 0)
        self.metrics.counter_sources.append(self.proxy.tcp.figures.snapshot)
        self.metrics.gauge_sources.append(self.proxy.tcp.figures.gauges)
        self.sessions = set()  # ClientConnection
        self.udp = UdpProxy(self)  # UDP listeners and flows (udp/)
        self.health = HealthChecks(self)  # active health checks (health/)
        self.max_connections = config.max_connections
        self.accept_paused = False
        # evict_on_queue_full: idle connections make room for waiting ones (worker/eviction.py)
        self.eviction = Eviction() if config.evict_on_queue_full else None
        self.stopping = False
        self.running = True
        self.channel = channel
        self.scm = scm
        self.scm_listeners: dict[str, socket.socket] = {}  # received, not yet served
        self.on_drained: Callable[[], None] | None = None
        self.on_message: Callable[[WorkerRequest], None] = lambda message: None
        # Access logs (worker/access_logs.py): set only while their log level is on.
        self.access_logs: WorkerAccessLogs | None = None
        self.reopen_logs = False  # SIGUSR1 came (logrotate): reopen at the next tick
        self.access_log = None
        self.error_access_log = None
        # Where a session leaves its requests' ends (None: nobody wants them), and what takes
        # them to the metrics and the access log in batches (worker/request_ends.py).
        self.ended = None
        self.request_ends = RequestEnds(self)
        self.request_ends.follow()

    # -- registration -----------------------------------------------------------------------

    def register(self, fd: int, handler: Callable[[int], None], mask: int) -> None:
        if fd == self.handed_fd:  # still in the epoll set (hand_over)
            self.handed_fd = -1
            if mask != self.handed_mask:
                self._epoll_modify(fd, mask)
        else:
            self._epoll_register(fd, mask)
        self.handlers[fd] = handler

    def set_handler(self, fd: int, handler: Callable[[int], None]) -> None:
        self.handlers[fd] = handler

    def modify(self, fd: int, mask: int) -> None:
        self._epoll_modify(fd, mask)

    def unregister(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def forget(self, fd: int) -> None:
        """For a socket about to be closed: closing it removes it from the epoll set, so
        the `epoll_ctl(DEL)` of `unregister` would be one wasted system call. (`in` and
        `del`: native dict operations compiled, where `pop` is a method call by name.)"""
        handlers = self.handlers
        if fd in handlers:
            del handlers[fd]

    def hand_over(self, fd: int, mask: int) -> None:
        self.handlers.pop(fd, None)
        self.handed_fd = fd
        self.handed_mask = mask

    def end_hand_over(self, fd: int) -> None:
        if self.handed_fd == fd:  # not taken over: out of the epoll set, as unregister does
            self.handed_fd = -1
            self.epoll.unregister(fd)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        self.register(self.channel.fileno(), self._on_channel, EPOLLIN)
        poll = self.epoll.poll
        handlers = self.handlers
        timers = self.timers
        request_ends = self.request_ends
        next_tick = self.now + 1.0
        while self.running:
            events = poll(max(0.0, next_tick - self.now), MAX_EVENTS)
            self.now = now = time.monotonic()
            for fd, mask in events:
                handler = handlers.get(fd)
                if handler is None:
                    continue
                try:
                    handler(mask)
                except Exception:
                    self._handler_failed(handler)
            if self.to_flush:
                self._flush_all()
            if self.ended and request_ends.due(now):
                request_ends.settle()  # counted and logged in batches, never per request
            access_logs = self.access_logs
            if access_logs is not None and now >= access_logs.due_at:
                access_logs.turn()
            if now >= next_tick:
                next_tick = now + 1.0
                if self.reopen_logs:
                    self._reopen_logs()
                if self.to_file:
                    waiting, self.to_file = self.to_file, set()
                    file_waiting(timers, waiting)
                timers.expire(now)
                self.health.tick(now)
                self.buffers.tick()
                self.proxy.peers.prune()
                self.heap.tick(now, self.counters.accepted - len(self.sessions))
                self.own_request_ids.refresh()
                self._check_drained()

    def file_soon(self, entry: Timed) -> None:
        """A new session, its `deadline` set and its `timer_slot` SOON: filed in the wheel at
        the next tick, unless it closed by then (a `Connection: close` exchange takes well
        under a second: no wheel work at all). At most FILE_SOON_MAX wait (memory). A set:
        `session_closed` takes a closed session out at once, so that it is freed then, not
        kept until the tick (kept, each connection's session and connection context went
        through the young generation's collections: ~1,400 instructions per connection)."""
        waiting = self.to_file
        waiting.add(entry)
        if len(waiting) >= FILE_SOON_MAX:
            self.to_file = set()
            file_waiting(self.timers, waiting)

    def flush_soon(self, writer: Flushable) -> None:
        """`writer.flush()` once, after this turn's events: an HTTP/2 connection whose
        streams answered several times in one turn writes once."""
        self.to_flush.add(writer)

    def _flush_all(self) -> None:
        writers, self.to_flush = self.to_flush, set()
        for writer in writers:
            try:
                writer.flush()
            except Exception:
                self._handler_failed(writer.flush)

    def on_sigusr1(self, _signum: int, _frame: object) -> None:
        """SIGUSR1, forwarded by main after logrotate: only a flag, handled at the next tick,
        outside whatever the loop was doing when the signal came."""
        self.reopen_logs = True

    def _reopen_logs(self) -> None:
        self.reopen_logs = False
        reopen_log_file()
        log.info("SIGUSR1: log file reopened")
        if self.access_logs is not None:
            self.access_logs.reopen()

    def _handler_failed(self, handler: Callable[..., None]) -> None:
        log.exception("unexpected error in an event handler; closing its connection")
        owner = getattr(handler, "__self__", handler)  # a bound method's, or a callable session
        close = getattr(owner, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("error while closing a failed connection")

    # -- the channel to main ----------------------------------------------------------------

    def _on_channel(self, mask: int) -> None:
        channel = self.channel
        try:
            if mask & EPOLLOUT and channel.flush():
                self.modify(channel.fileno(), EPOLLIN)
            if mask & ~EPOLLOUT:
                for message in channel.receive():
                    if isinstance(message, WorkerRequest):
                        self.on_message(message)
                    else:
                        log.error("invalid frame from main: %s", message.reason)
        except ChannelError as error:
            log.error("channel to main lost (%s): exiting", error)
            self.running = False

    def send(self, response: WorkerResponse) -> None:
        try:
            self.channel.send(response)
            if not self.channel.flush():
                self.modify(self.channel.fileno(), EPOLLIN | EPOLLOUT)
        except ChannelError as error:
            log.error("cannot answer main (%s): exiting", error)
            self.running = False

    # -- listeners ----------------------------------------------------------------------------

    def receive_scm(self) -> None:
        """Blocking: one SCM message from main; its sockets wait in `scm_listeners`."""
        listeners = receive_listeners(self.scm)
        for group in listeners.groups():
            udp = group is listeners.udp  # filed apart: a TCP listener may share the port
            for address, sock in group.items():
                key = scm_key(address) if udp else address
                old = self.scm_listeners.pop(key, None)
                if old is not None:
                    old.close()
                self.scm_listeners[key] = sock

    def activate(self, address: SocketAddress) -> None:
        """Serve a listener: on main's socket for that address if we hold one, else bind."""
        listener = self._listener(address)
        if listener is None:
            raise ScmError(f"no HTTP or TCP listener at {address}")
        if listener.sock is not None:
            return
        sock = self.scm_listeners.pop(str(address), None)
        if isinstance(listener, TcpListener):
            sock = sock or bind_listener(listener.config)
            acceptor = accept_handler(self, listener)
        else:
            sock = sock or bind_listener(listener.config)
            acceptor = self._acceptor(listener)
        sock.setblocking(False)
        listener.sock = sock
        listener.accepting = True
        self.register(sock.fileno(), acceptor, 0 if self.accept_paused else EPOLLIN)

    def _listener(self, address: SocketAddress) -> HttpListener | TcpListener | None:
        return self.proxy.listeners.get(address) or self.proxy.tcp.listeners.get(address)

    def _all_listeners(self) -> list[HttpListener | TcpListener]:
        return [*self.proxy.listeners.values(), *self.proxy.tcp.listeners.values()]

    def deactivate(self, address: SocketAddress, to_scm: bool = False) -> None:
        listener = self._listener(address)
        if listener is None or listener.sock is None:
            return
        sock, listener.sock = listener.sock, None
        listener.accepting = False
        self.unregister(sock.fileno())
        if to_scm:
            group = {"https": "tls", "tcp": "tcp"}.get(listener.scheme, "http")
            send_listeners(self.scm, Listeners(**{group: {str(address): sock}}))
        sock.close()

    def activate_udp(self, address: SocketAddress) -> None:
        """Serve a UDP listener: on main's socket for it if we hold one, else bind."""
        self.udp.activate(address, self.scm_listeners.pop(scm_key(address), None))

    def deactivate_udp(self, address: SocketAddress, to_scm: bool = False) -> None:
        sock = self.udp.deactivate(address)
        if sock is None:
            return
        if to_scm:
            send_listeners(self.scm, Listeners(udp={str(address): sock}))
        sock.close()

    def return_listen_sockets(self) -> None:
        """Upgrade: stop accepting and hand every listening socket back to main."""
        returned = Listeners()
        groups = {"https": returned.tls, "tcp": returned.tcp}
        for listener in self._all_listeners():
            if listener.sock is not None:
                self.unregister(listener.sock.fileno())
                group = groups.get(listener.scheme, returned.http)
                group[str(listener.config.address)] = listener.sock
                listener.sock = None
                listener.accepting = False
        self.udp.hand_back(returned)
        send_listeners(self.scm, returned)
        returned.close()

    def _acceptor(self, listener: HttpListener) -> Callable[[int], None]:
        if isinstance(listener, HttpsListener):
            return tls_acceptor(self, listener)  # connections start with a TLS handshake

        def open_session(sock: socket.socket, peer: Peer, figures: ListenerFigures | None) -> None:
            session = HttpSession(self, listener, sock, peer)
            session.figures = figures
            self.sessions.add(session)

        metrics_name = str(listener.config.address)  # formatted once, not per connection

        def on_accept(mask: int) -> None:
            if listener.expect_proxy:
                accept_proxied(self, listener, open_session)  # the PROXY header first
                return
            sessions = self.sessions
            room = self.max_connections - len(sessions)
            listening = listener.sock
            if room <= 0 or listening is None:
                self.pause_accept()
                return
            counters = self.counters
            figures = self.metrics.listener(metrics_name)
            for sock, peer in accept_streams(listening, room):
                counters.accepted += 1
                figures.accepted += 1  # ListenerFigures.opened(), inlined
                figures.active += 1
                session = HttpSession(self, listener, sock, peer)
                session.figures = figures
                sessions.add(session)
            if len(sessions) >= self.max_connections:
                self.pause_accept()  # the rest waits in the kernel's backlog

        return on_accept

    def pause_accept(self) -> None:
        """Full: new connections wait in the kernel's backlog (unless idle ones can go)."""
        eviction = self.eviction
        if eviction is not None and not self.stopping and eviction.make_room(self):
            return
        if not self.accept_paused:
            self.accept_paused = True
            self._set_accepting(0)

    def _set_accepting(self, mask: int) -> None:
        for listener in self._all_listeners():
            if listener.sock is not None:
                self.modify(listener.sock.fileno(), mask)

    def session_closed(self, session: ClientConnection) -> None:
        self.sessions.discard(session)
        self.to_file.discard(session)  # (a session not waiting: nothing to do)
        count = len(self.sessions)
        figures = session.figures
        if figures is not None:
            figures.active -= 1  # ListenerFigures.closed(), inlined
        resume = count < self.max_connections * RESUME_ACCEPT_RATIO
        if self.accept_paused and resume and not self.stopping:
            self.accept_paused = False
            self._set_accepting(EPOLLIN)
        if self.stopping and not count:
            self._check_drained()

    def _gauges(self) -> dict[str, int]:
        return {
            "client.connections": len(self.sessions),
            "backend.pool.idle": len(self.pool),
            "timers": len(self.timers),
            "sessions.evicted": self.eviction.evicted if self.eviction is not None else 0,
            **self.buffers.figures(),
        }

    # -- stopping -----------------------------------------------------------------------------

    def soft_stop(self, on_drained: Callable[[], None]) -> None:
        """Stop accepting, close idle connections, finish the rest, then call `on_drained`."""
        self.stopping = True
        self.on_drained = on_drained
        self._close_listeners()
        self.pause_accept()
        for session in list(self.sessions):
            session.soft_stop()
        self.pool.close_all()
        self.h2_backends.close_all()
        self._check_drained()

    def _close_listeners(self) -> None:
        """Soft stop: accept what the kernel already queued (those clients are served, never
        reset), then close this worker's copy of each listening socket. Main closes its own
        when the whole proxy stops, so once every worker has too, the kernel refuses new
        connections at once instead of queueing them for nobody until the last process exits
        (a worker upgrade loses nothing: main and the new worker keep the socket open)."""
        for address, listener in list(self.proxy.listeners.items()):
            if listener.sock is None:
                continue
            accept = self.handlers.get(listener.sock.fileno())
            if accept is not None and not self.accept_paused:
                accept(EPOLLIN)
            self.deactivate(address)
        self.udp.close_all()  # flows hold no client connection to drain

    def _check_drained(self) -> None:
        if self.stopping and not self.sessions and self.on_drained is not None:
            on_drained, self.on_drained = self.on_drained, None
            on_drained()

    def close(self) -> None:
        for session in list(self.sessions):
            session.close()
        self.request_ends.settle()
        if self.access_logs is not None:
            self.access_logs.close()
        self.pool.close_all()
        self.h2_backends.close_all()
        for listener in self._all_listeners():
            if listener.sock is not None:
                listener.sock.close()
                listener.sock = None
        self.udp.close_all()
        self.health.close_all()
        for sock in self.scm_listeners.values():
            sock.close()
        self.epoll.close()
