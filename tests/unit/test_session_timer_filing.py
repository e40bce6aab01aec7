"""New sessions are filed in the timer wheel at the next tick, not at accept (Loop.file_soon):
a connection closed within its first second never touches the wheel, one still open is filed
then with the deadline it has, and times out as before. On the fake host (fake_host.py),
whose `advance` files the waiting sessions as the loop's tick does."""

from __future__ import annotations

import select
from dataclasses import dataclass

from fake_host import FakeHost, FakeSocket

from dataplane.command.address import SocketAddress
from dataplane.command.messages import HttpListenerConfig
from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import CLOSED, HEAD, NOT_FILED, SOON
from dataplane.proxy.timers import TimerWheel
from dataplane.proxy.worker.loop import file_waiting

LISTENER = SocketAddress.parse("127.0.0.1:8080")
CLOSE_GET = b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def open_session(host: FakeHost, fd: int) -> tuple[HttpSession, FakeSocket]:
    client = FakeSocket(fd)
    listener = host.proxy.listeners[LISTENER]
    session = HttpSession(host, listener, client, ("203.0.113.9", 5000 + fd))  # type: ignore[arg-type]
    host.sessions.add(session)
    return session, client


def exchange(host: FakeHost, fd: int) -> HttpSession:
    """One `Connection: close` request answered by the backend (pooled after the first)."""
    session, client = open_session(host, fd)
    client.incoming += CLOSE_GET
    host.fire(fd, select.EPOLLIN)
    back = host.backend_sockets[-1]
    if host.masks.get(back.fd) == select.EPOLLOUT:  # a new connection: it connects
        host.fire(back.fd, select.EPOLLOUT)
    back.incoming += OK
    host.fire(back.fd, select.EPOLLIN)
    assert bytes(client.sent).endswith(b"\r\n\r\nhello") and client.closed
    return session


def filed(timers: TimerWheel, entry: object) -> bool:
    return any(entry in bucket for bucket in timers._slots.values())


def test_a_connection_closed_before_the_tick_never_touches_the_wheel() -> None:
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER), 1)
    first = exchange(host, 10)  # opens the backend connection, which the pool keeps
    second = exchange(host, 11)  # over the pooled connection
    for session in (first, second):
        assert session.phase == CLOSED and session.timer_slot == NOT_FILED
    host.advance(1.0)
    assert not filed(host.timers, first) and not filed(host.timers, second)
    assert first.timer_slot == second.timer_slot == NOT_FILED


def test_an_idle_connection_is_filed_at_the_tick_and_times_out_as_before() -> None:
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER, front_timeout=5), 1)
    session, _client = open_session(host, 10)
    assert session.timer_slot == SOON and not filed(host.timers, session)
    assert session.deadline == host.now + 5
    host.advance(0.5)
    assert filed(host.timers, session) and session.timer_slot != SOON
    host.advance(4.0)
    assert session.phase == HEAD  # 4.5 s: not yet
    host.advance(1.0)
    host.advance(1.0)  # the wheel fires within its one-second slot
    assert session.phase == CLOSED


@dataclass(eq=False)
class Entry:
    deadline: float
    timer_slot: float = SOON
    fired: bool = False

    def on_timeout(self, now: float) -> None:
        self.fired = True


def test_file_waiting_files_the_open_ones_with_their_deadline_now() -> None:
    timers = TimerWheel(100.0)
    still_open, closed, filed_meanwhile = Entry(130.0), Entry(160.0), Entry(110.0)
    closed.timer_slot = NOT_FILED  # its session closed: cancelled
    timers.arm(filed_meanwhile, 110.0)  # armed while it waits: arm only sets its deadline
    assert filed_meanwhile.timer_slot == SOON and len(timers) == 0  # (SOON: below every slot)
    still_open.deadline = 103.5  # moved while it waited: the deadline it has now counts
    file_waiting(timers, [still_open, closed, filed_meanwhile])
    assert still_open.timer_slot == 104 and closed.timer_slot == NOT_FILED
    assert filed_meanwhile.timer_slot == 110 and len(timers) == 2
    timers.expire(104.0)
    assert still_open.fired and not closed.fired and not filed_meanwhile.fired
