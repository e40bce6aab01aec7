"""The TCP session's state machine, driven by hand with stand-in sockets (no network, no sleep):
connect retries and timeouts, back-pressure, half-close both ways, idle timeouts, buffers."""

from __future__ import annotations

import errno
import select
import socket
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.messages import AddBackend, Cluster, Request, TcpListenerConfig
from dataplane.proxy.buffers import BufferPool
from dataplane.proxy.clusters import HttpProxy
from dataplane.proxy.observability.counters import Counters
from dataplane.proxy.observability.metrics import MetricsRegistry
from dataplane.proxy.tcp.listener import TcpListener
from dataplane.proxy.tcp.session import CLOSED, CONNECTING, RELAY, TcpSession
from dataplane.proxy.timers import TimerWheel

IN, OUT = select.EPOLLIN, select.EPOLLOUT


class FakeSocket:
    """Bytes to be read (`incoming`, then EOF once `eof`), and a send window (`room`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.incoming = b""
        self.eof = False
        self.room = 1 << 30
        self.sent = b""
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
        self.incoming = self.incoming[count:]
        return count

    def send(self, data: memoryview) -> int:
        if not self.room:
            raise BlockingIOError
        count = min(self.room, len(data))
        self.sent += bytes(data[:count])
        self.room -= count
        return count

    def shutdown(self, how: int) -> None:
        assert how == socket.SHUT_WR
        self.shut = True

    def close(self) -> None:
        self.closed = True


class FakeConnection:
    def __init__(self, loop: FakeLoop, backend: Any, fd: int) -> None:
        self.loop = loop
        self.backend = backend
        self.sock = FakeSocket(fd)
        self.fd = fd
        self.connected = False
        self.connect_started = 0.0
        self.error = 0

    def connect(self) -> int:
        self.connect_started = self.loop.now
        return self.loop.refused.get(self.backend.backend_id, errno.EINPROGRESS)

    def connect_error(self) -> int:
        return self.error

    def close(self) -> None:
        self.loop.masks.pop(self.fd, None)
        self.sock.close()
        if self.connected:
            self.backend.connection_closed()


class FakePool:
    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.opened: list[FakeConnection] = []

    def open(self, backend: Any, cluster_id: str) -> FakeConnection:
        conn = FakeConnection(self.loop, backend, 100 + len(self.opened))
        self.opened.append(conn)
        return conn


class FakeLoop:
    def __init__(self) -> None:
        self.now = 1000.0
        self.timers = TimerWheel(self.now)
        self.buffers = BufferPool(4096, 8192, 0, 16)
        self.metrics = MetricsRegistry()
        self.metrics_enabled = True
        self.counters = Counters()
        self.proxy = HttpProxy(0, 0)
        self.pool = FakePool(self)
        self.masks: dict[int, int] = {}
        self.handlers: dict[int, Any] = {}
        self.closed: list[TcpSession] = []
        self.events: list[Any] = []
        self.refused: dict[str, int] = {}
        self.access_log: Any = None  # the loop's, while its level is on
        self.error_access_log: Any = None

    def register(self, fd: int, handler: Any, mask: int) -> None:
        assert fd not in self.masks
        self.masks[fd], self.handlers[fd] = mask, handler

    def modify(self, fd: int, mask: int) -> None:
        self.masks[fd] = mask

    def unregister(self, fd: int) -> None:
        del self.masks[fd]

    def forget(self, fd: int) -> None:
        self.masks.pop(fd, None)

    def session_closed(self, session: TcpSession) -> None:
        self.closed.append(session)

    def send(self, response: Any) -> None:
        self.events.append(response)


def setup(backends: int = 2, **listener: Any) -> tuple[FakeLoop, TcpSession, FakeSocket]:
    loop = FakeLoop()
    loop.proxy.apply(Request.of(add_cluster=Cluster(cluster_id="c")))
    for n in range(backends):
        address = SocketAddress.parse(f"127.0.0.1:{9000 + n}")
        add = AddBackend(cluster_id="c", backend_id=f"b{n}", address=address)
        loop.proxy.apply(Request.of(add_backend=add))
    config = TcpListenerConfig(address=SocketAddress.parse("127.0.0.1:5000"), **listener)
    tcp = TcpListener(config)
    tcp.cluster_id = "c"
    front = FakeSocket(10)
    session = TcpSession(loop, tcp, front, ("10.0.0.1", 4242))  # type: ignore[arg-type]
    session.start()
    return loop, session, front


def connected(loop: FakeLoop, session: TcpSession) -> FakeSocket:
    back = session.back
    assert back is not None and session.phase == CONNECTING
    session.on_back(OUT)
    assert session.phase == RELAY
    return back.sock  # type: ignore[return-value]


def test_connects_then_relays_both_ways() -> None:
    loop, session, front = setup()
    assert loop.masks == {100: OUT}  # the client waits unread while the backend connects
    back = connected(loop, session)
    assert loop.masks == {10: IN, 100: IN}
    front.incoming = b"hello"
    session.on_front(IN)
    assert back.sent == b"hello"
    back.incoming = b"world"
    session.on_back(IN)
    assert front.sent == b"world"
    assert loop.masks == {10: IN, 100: IN}


def test_back_pressure_stops_reading_the_source_until_the_destination_drains() -> None:
    loop, session, front = setup()
    back = connected(loop, session)
    back.room = 3
    front.incoming = b"abcdefgh"
    session.on_front(IN)
    assert back.sent == b"abc"
    assert loop.masks == {100: IN | OUT}  # nothing to wait for on the client: out of epoll
    back.room = 100
    session.on_back(OUT)
    assert back.sent == b"abcdefgh"
    assert loop.masks == {10: IN, 100: IN}


def test_half_close_both_ways_then_closed_with_every_buffer_back() -> None:
    loop, session, front = setup()
    back = connected(loop, session)
    front.incoming, front.eof = b"last", True
    session.on_front(IN)
    session.on_front(IN)  # reads the FIN
    assert back.sent == b"last" and back.shut and not front.shut
    assert session.phase == RELAY and 10 not in loop.masks
    back.incoming = b"answer"
    session.on_back(IN)
    assert front.sent == b"answer"
    back.eof = True
    session.on_back(IN)
    assert front.shut and session.phase == CLOSED and loop.closed == [session]
    assert front.closed and back.closed
    assert loop.buffers.lent == 0
    figures = loop.metrics.cluster("c").backend("b0")
    assert (figures.bytes_in, figures.bytes_out) == (4, 6)


def test_a_fin_waits_for_the_bytes_before_it() -> None:
    loop, session, front = setup()
    back = connected(loop, session)
    back.incoming, back.eof = b"0123456789", True
    front.room = 4
    session.on_back(IN)
    session.on_back(IN)  # not read: back-pressure holds the FIN in the socket
    assert front.sent == b"0123" and not front.shut
    front.room = 100
    session.on_front(OUT)
    session.on_back(IN)
    assert front.sent == b"0123456789" and front.shut and session.phase == RELAY


def test_refused_connect_tries_another_backend_and_counts_the_failure() -> None:
    loop = FakeLoop()
    loop.refused["b0"] = errno.ECONNREFUSED
    loop.proxy.apply(Request.of(add_cluster=Cluster(cluster_id="c")))
    for n in range(2):
        address = SocketAddress.parse(f"127.0.0.1:{9000 + n}")
        loop.proxy.apply(
            Request.of(add_backend=AddBackend(cluster_id="c", backend_id=f"b{n}", address=address))
        )
    tcp = TcpListener(TcpListenerConfig(address=SocketAddress.parse("127.0.0.1:5000")))
    tcp.cluster_id = "c"
    for _ in range(2):  # round robin starts on either backend: both orders end on b1
        session = TcpSession(loop, tcp, FakeSocket(10), ("10.0.0.1", 1))  # type: ignore[arg-type]
        session.start()
        assert session.back is not None and session.back.backend.backend_id == "b1"
        session.close()
    assert loop.metrics.cluster("c").connect_errors >= 1


def test_connect_timeout_moves_on_to_the_next_backend_then_gives_up() -> None:
    loop, session, front = setup(backends=2, connect_timeout=2)
    first = session.back
    assert first is not None
    loop.now += 3
    loop.timers.expire(loop.now)
    assert session.back is not None and session.back is not first and session.phase == CONNECTING
    loop.now += 3
    loop.timers.expire(loop.now)  # both backends failed: their breakers hold them back
    assert session.phase == CLOSED and front.closed
    assert loop.proxy.tcp.figures.no_backend == 1


def test_idle_connection_is_closed_after_the_front_timeout() -> None:
    loop, session, front = setup(front_timeout=5, back_timeout=30)
    connected(loop, session)
    loop.now += 3
    loop.timers.expire(loop.now)
    front.incoming = b"x"
    session.on_front(IN)  # activity pushes the deadline later
    loop.now += 4
    loop.timers.expire(loop.now)
    assert session.phase == RELAY
    loop.now += 2
    loop.timers.expire(loop.now)
    assert session.phase == CLOSED and loop.proxy.tcp.figures.timeouts == 1


def test_a_listener_without_a_cluster_closes_at_once() -> None:
    loop = FakeLoop()
    tcp = TcpListener(TcpListenerConfig(address=SocketAddress.parse("127.0.0.1:5000")))
    front = FakeSocket(10)
    session = TcpSession(loop, tcp, front, ("10.0.0.1", 1))  # type: ignore[arg-type]
    session.start()
    assert session.phase == CLOSED and front.closed and loop.proxy.tcp.figures.no_cluster == 1


def test_idle_buffers_go_back_at_the_sweep() -> None:
    loop, session, front = setup()
    back = connected(loop, session)
    front.incoming = b"data"
    session.on_front(IN)
    assert loop.buffers.lent == 1 and back.sent == b"data"
    loop.buffers.sweep()
    assert loop.buffers.lent == 0
