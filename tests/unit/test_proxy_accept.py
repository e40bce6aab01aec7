"""The accept-time PROXY header reader over a stand-in socket and loop (no real sockets).

What matters at this boundary: only the header's bytes are taken from the socket (what follows
is left for the HTTP session or the TLS handshake), in whatever pieces they come; a connection
whose header is there at accept never touches epoll or the timer wheel; every refusal closes
and is counted.
"""

from __future__ import annotations

import socket
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataplane.proxy.mux.session_fields import EPOLLIN
from dataplane.proxy.observability.counters import ProxyProtocolFigures
from dataplane.proxy.proxy_protocol.accept import ProxyHeaderReader
from dataplane.proxy.proxy_protocol.header import v2_header
from dataplane.proxy.timers import TimerWheel

HEADER = v2_header(("203.0.113.7", 4242), ("10.0.0.1", 80), tlvs=b"\x05\x00\x03abc")
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PEER = ("127.0.0.1", 50000)


class FakeSocket:
    def __init__(self) -> None:
        self.incoming = bytearray()
        self.eof = False
        self.closed = False

    def fileno(self) -> int:
        return 7

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.incoming:
            if self.eof:
                return b""
            raise BlockingIOError
        data = bytes(self.incoming[:size])
        if not flags & socket.MSG_PEEK:
            del self.incoming[:size]
        return data

    def close(self) -> None:
        self.closed = True


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.timers = TimerWheel(self.now)
        self.registered: dict[int, Any] = {}
        self.sessions: set[Any] = set()
        self.closed: list[Any] = []
        self.proxy_protocol = ProxyProtocolFigures()

    def register(self, fd: int, handler: Any, mask: int) -> None:
        assert fd not in self.registered
        self.registered[fd] = handler

    def unregister(self, fd: int) -> None:
        del self.registered[fd]

    def forget(self, fd: int) -> None:
        del self.registered[fd]

    def session_closed(self, session: Any) -> None:
        self.sessions.discard(session)
        self.closed.append(session)


class FakeListener:
    request_timeout = 10.0


def reader() -> tuple[ProxyHeaderReader, FakeSocket, FakeLoop, list[tuple[Any, ...]]]:
    loop, sock, started = FakeLoop(), FakeSocket(), []
    found = ProxyHeaderReader(
        loop,  # type: ignore[arg-type]
        FakeListener(),  # type: ignore[arg-type]
        sock,  # type: ignore[arg-type]
        PEER,
        lambda sock, peer, figures: started.append((sock, peer)),
    )
    loop.sessions.add(found)
    return found, sock, loop, started


def test_a_header_there_at_accept_never_touches_epoll_or_the_wheel() -> None:
    found, sock, loop, started = reader()
    sock.incoming += HEADER + REQUEST
    found.on_event(EPOLLIN)
    assert started == [(sock, ("203.0.113.7", 4242))]
    assert started[0][1].public == ("10.0.0.1", 80)  # the listener's public address for it
    assert sock.incoming == REQUEST  # left for the HTTP session
    assert loop.registered == {} and len(loop.timers) == 0 and loop.sessions == set()
    assert loop.proxy_protocol.snapshot()["proxy_protocol.headers"] == 1


@given(st.data())
def test_only_the_header_is_taken_in_any_pieces(data: st.DataObject) -> None:
    found, sock, loop, started = reader()
    whole = HEADER + REQUEST
    cuts = sorted(data.draw(st.sets(st.integers(1, len(whole) - 1), max_size=10)))
    for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True):
        sock.incoming += whole[a:b]
        if not started:
            found.on_event(EPOLLIN)
    assert started == [(sock, ("203.0.113.7", 4242))]
    assert bytes(sock.incoming) == whole[len(HEADER) :]
    assert loop.registered == {} and len(loop.timers) == 0 and not sock.closed


def test_waiting_registers_once_and_arms_the_request_timeout() -> None:
    found, sock, loop, started = reader()
    found.on_event(EPOLLIN)  # nothing yet
    sock.incoming += HEADER[:10]
    loop.registered[7](EPOLLIN)
    assert sock.incoming == b""  # header bytes taken, so epoll does not report them again
    assert found.deadline == 110.0 and len(loop.timers) == 1
    sock.incoming += HEADER[10:] + REQUEST
    loop.registered[7](EPOLLIN)
    assert started and loop.registered == {} and len(loop.timers) == 0


def test_too_slow() -> None:
    found, sock, loop, started = reader()
    sock.incoming += HEADER[:20]
    found.on_event(EPOLLIN)
    loop.timers.expire(111.0)
    assert sock.closed and loop.closed == [found] and not started and loop.registered == {}
    assert loop.proxy_protocol.snapshot()["proxy_protocol.timeouts"] == 1


def test_refusals_close_and_count() -> None:
    cases = [(REQUEST, "errors"), (HEADER[:20], "errors"), (b"", "empty")]
    for sent, counter in cases:
        found, sock, loop, started = reader()
        sock.incoming += sent
        sock.eof = sent != REQUEST  # the client closes after what it sent
        found.on_event(EPOLLIN)
        if 7 in loop.registered:
            loop.registered[7](EPOLLIN)  # epoll reports the end of the stream next
        assert sock.closed and not started and loop.closed == [found], sent
        figures = loop.proxy_protocol.snapshot()
        assert figures[f"proxy_protocol.{counter}"] == 1
        assert sum(figures.values()) == 1
        found.close()  # idempotent
        assert loop.closed == [found]


def test_a_header_without_an_address_hands_on_the_peer() -> None:
    found, sock, loop, started = reader()
    sock.incoming += v2_header(None, local=True)
    found.on_event(EPOLLIN)
    assert started == [(sock, PEER)]
    assert loop.proxy_protocol.snapshot()["proxy_protocol.local"] == 1
