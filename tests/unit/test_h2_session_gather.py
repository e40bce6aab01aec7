"""An h2c connection (a plain socket: `H2Session.gather`) writes h2's frames as pieces,
bodies not copied: the very bytes the joined write sends, in order, whatever the socket takes
each time. On the fake host (no socket, no process, no sleep)."""

from __future__ import annotations

import select

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from fake_host import FakeHost, FakeSocket

from dataplane.command.address import SocketAddress
from dataplane.command.messages import HttpListenerConfig
from dataplane.proxy.mux import h2_session
from dataplane.proxy.mux.h2_session import H2Session

IN, OUT = select.EPOLLIN, select.EPOLLOUT
LISTENER = SocketAddress.parse("127.0.0.1:8080")
PEER = ("203.0.113.9", 5555)
FRONT_FD = 10
BODY = bytes(range(256)) * 400  # 102,400 bytes: 7 DATA frames
REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com")]


def exchange(gather: bool, room: int | None) -> tuple[bytes, bytes, H2Session]:
    """Two 100 KiB responses on one connection, the socket taking `room` bytes at a time:
    everything the session wrote, and the bodies the client read from it."""
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER, h2c=True), 1)
    sock = FakeSocket(FRONT_FD)
    session = H2Session(host, host.proxy.listeners[LISTENER], sock, PEER)  # type: ignore[arg-type]
    session.gather = gather
    host.sessions.add(session)
    session.start()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.increment_flow_control_window(1 << 20)
    for stream_id in (1, 3):
        client.send_headers(stream_id, [*REQUEST, (b":path", b"/%d" % stream_id)], True)
    sock.incoming += client.data_to_send()
    host.fire(FRONT_FD, IN)
    written = bytearray()
    for index, back in enumerate(host.backend_sockets):
        host.fire(back.fd, OUT)
        back.take()
        back.incoming += b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n" + BODY
        sock.room = room
        host.fire(back.fd, IN)
        while room is not None and host.masks[FRONT_FD] & OUT:  # the socket drains
            written += sock.take()
            sock.room = room
            host.fire(FRONT_FD, OUT)
        written += sock.take()
        assert index < 2
    events = client.receive_data(bytes(written))
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    ended = [e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)]
    assert ended == [1, 3]
    return bytes(written), data, session


@pytest.mark.parametrize("room", [None, 9, 5_000, 16_393, 70_000])
def test_the_pieces_written_are_the_joined_bytes(room: int | None) -> None:
    exchange(False, room)  # the worker's HPACK caches warm (a field's first coding differs)
    gathered, data, session = exchange(True, room)
    joined, _, _ = exchange(False, room)
    assert gathered == joined
    assert data == BODY * 2
    assert not session.out


def test_too_many_pieces_are_joined_into_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    exchange(True, None)
    monkeypatch.setattr(h2_session, "MAX_PIECES", 2)
    gathered, data, _ = exchange(True, None)
    assert data == BODY * 2
    monkeypatch.undo()
    assert gathered == exchange(True, None)[0]


def test_only_a_plain_socket_gathers() -> None:
    """Anything else (a TLS stream, here a fake) is written joined: TLS encrypts in records."""
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER, h2c=True), 1)
    sock = FakeSocket(FRONT_FD)
    assert not H2Session(host, host.proxy.listeners[LISTENER], sock, PEER).gather  # type: ignore[arg-type]
