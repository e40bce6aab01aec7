"""An HTTP/2 client connection (mux/h2_session.py, h2_stream.py, h1_exchange.py) driven by hand
on the fake host: a real h2 client in memory on one side, fake HTTP/1.1 backend sockets on the
other. No socket, no process, no sleep."""

from __future__ import annotations

import select
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from fake_host import FakeBackendSocket, FakeHost, FakeSocket

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.proxy.mux.h2_session import H2Session

IN, OUT = select.EPOLLIN, select.EPOLLOUT
LISTENER = SocketAddress.parse("127.0.0.1:8080")
PEER = ("203.0.113.9", 5555)
FRONT_FD = 10
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


class Client:
    """An h2 client in memory, writing into the session's fake socket."""

    def __init__(self, host: FakeHost, sock: FakeSocket) -> None:
        self.host, self.sock = host, sock
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()

    def get(self, path: str = "/", authority: str = "example.com", end: bool = True) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"GET" if end else b"POST"),
            (b":scheme", b"http"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        self.conn.send_headers(stream_id, headers, end_stream=end)
        self.push()
        return stream_id

    def push(self) -> None:
        self.sock.incoming += self.conn.data_to_send()
        self.host.fire(FRONT_FD, IN)

    def events(self) -> list[Any]:
        events = self.conn.receive_data(self.sock.take())
        self.sock.incoming += self.conn.data_to_send()  # SETTINGS acks, WINDOW_UPDATEs
        return list(events)


def setup(backends: int = 1) -> tuple[FakeHost, H2Session, Client]:
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER, h2c=True), backends)
    sock = FakeSocket(FRONT_FD)
    session = H2Session(host, host.proxy.listeners[LISTENER], sock, PEER)  # type: ignore[arg-type]
    host.sessions.add(session)
    session.start()
    client = Client(host, sock)
    client.push()
    client.events()  # our SETTINGS
    return host, session, client


def connect(host: FakeHost, index: int = -1) -> FakeBackendSocket:
    back = host.backend_sockets[index]
    assert host.masks[back.fd] == OUT
    host.fire(back.fd, OUT)
    return back


def answer(host: FakeHost, back: FakeBackendSocket, data: bytes) -> None:
    back.incoming += data
    host.fire(back.fd, IN)


def test_a_stream_is_forwarded_as_http11_and_answered_as_h2() -> None:
    host, session, client = setup()
    stream = client.get("/path?q=1")
    back = connect(host)
    sent = back.take()
    assert sent.startswith(b"GET /path?q=1 HTTP/1.1\r\nhost: example.com\r\n")
    assert b"\r\nX-Forwarded-For: 203.0.113.9" in sent and b"\r\nSozu-Id: REQ-1" in sent
    answer(host, back, OK)
    events = client.events()
    [head] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert head.stream_id == stream
    assert dict(head.headers)[b":status"] == b"200"
    assert dict(head.headers)[b"sozu-id"] == b"REQ-1"
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"hello"
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert not session.streams  # done, and the backend connection is pooled again
    assert len(host.pool) == 1
    client.get("/again")
    assert len(host.backend_sockets) == 1  # reused
    assert host.ended is not None and [end[3] for end in host.ended] == [200]


def test_no_route_is_a_404_answered_on_the_stream_only() -> None:
    host, session, client = setup()
    client.get("/", authority="unknown.example")
    events = client.events()
    [head] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(head.headers)[b":status"] == b"404"
    assert not host.backend_sockets and not session.closed  # the connection goes on


def test_every_backend_refusing_gives_503() -> None:
    host, _session, client = setup(backends=2)
    host.refused.update({9001, 9002})
    client.get("/")
    events = client.events()
    [head] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(head.headers)[b":status"] == b"503"


def test_a_client_reset_closes_the_backend_connection() -> None:
    host, session, client = setup()
    stream = client.get("/slow")
    back = connect(host)
    back.take()
    client.conn.reset_stream(stream)
    client.push()
    assert back.closed and not session.streams
    assert len(host.pool) == 0  # an unfinished exchange is never pooled


def test_a_response_larger_than_the_window_waits_and_stalls_the_backend() -> None:
    host, _session, client = setup()
    stream = client.get("/big")
    back = connect(host)
    back.take()
    body = bytes(range(256)) * 800  # 204,800 bytes; the client's stream window is 65,535
    back.incoming += b"HTTP/1.1 200 OK\r\nContent-Length: 204800\r\n\r\n" + body
    got = b""
    stalled = False
    for _ in range(20):
        if host.masks.get(back.fd, 0) & IN and back.incoming:
            host.fire(back.fd, IN)
            continue
        stalled = stalled or bool(back.incoming)  # bytes left, but the backend is not read
        events = client.conn.receive_data(client.sock.take())
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                got += event.data
                client.conn.acknowledge_received_data(event.flow_controlled_length, stream)
        if any(isinstance(event, h2.events.StreamEnded) for event in events):
            break
        client.push()  # the WINDOW_UPDATEs
    assert stalled
    assert got == body


def test_the_idle_timeout_closes_a_connection_without_streams() -> None:
    host, session, client = setup()
    host.advance(61)  # front_timeout 60
    assert session.closed and client.sock.closed
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events())


def test_a_frontends_max_body_size_counts_the_body_only() -> None:
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER, h2c=True))
    limited = RequestHttpFrontend(
        address=LISTENER, hostname="upload.example", cluster_id="app", max_body_size=10
    )
    host.proxy.apply(Request.of(add_http_frontend=limited))
    sock = FakeSocket(FRONT_FD)
    session = H2Session(host, host.proxy.listeners[LISTENER], sock, PEER)  # type: ignore[arg-type]
    session.start()
    client = Client(host, sock)
    client.push()
    client.events()
    fits = client.get("/", authority="upload.example", end=False)
    client.conn.send_data(fits, b"x" * 10, end_stream=True)
    client.push()
    back = connect(host)
    assert back.take().endswith(b"\r\n\r\na\r\n" + b"x" * 10 + b"\r\n0\r\n\r\n")  # chunked
    too_big = client.get("/", authority="upload.example", end=False)
    client.conn.send_data(too_big, b"x" * 11, end_stream=True)
    client.push()
    statuses = {
        e.stream_id: dict(e.headers)[b":status"]
        for e in client.events()
        if isinstance(e, h2.events.ResponseReceived)
    }
    assert statuses[too_big] == b"413"
    assert not session.closed


def test_a_connection_ended_by_a_goaway_lingers_reading_until_the_client_closes() -> None:
    # A protocol error (DATA on stream 0) ends the connection with a GOAWAY; the session keeps
    # reading and dropping the client's bytes rather than closing on them, so no RST destroys
    # the GOAWAY in flight.
    host, session, client = setup()
    client.sock.incoming += b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"  # DATA on stream 0
    host.fire(FRONT_FD, IN)
    assert not session.closed and session.lingering
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events())
    client.sock.incoming += b"more frames the client had already sent"
    host.fire(FRONT_FD, IN)
    assert not session.closed and client.sock.incoming == b""  # read and dropped
    client.sock.eof = True
    host.fire(FRONT_FD, IN)
    assert session.closed and client.sock.closed


def test_a_lingering_connection_is_closed_after_the_linger_time() -> None:
    host, session, client = setup()
    client.sock.incoming += b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
    host.fire(FRONT_FD, IN)
    assert session.lingering and not session.closed
    host.advance(3)  # LINGER_SECONDS 2
    assert session.closed and client.sock.closed


def test_a_response_head_in_pieces_after_an_informational_one_is_read_whole() -> None:
    host, session, client = setup()
    client.get("/hints")
    back = connect(host)
    back.take()
    answer(host, back, b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nCont")
    answer(host, back, b"ent-Length: 5\r\n")
    answer(host, back, b"\r\nhel")
    answer(host, back, b"lo")
    events = client.events()
    heads = [e for e in events if isinstance(e, h2.events.InformationalResponseReceived)]
    assert [dict(e.headers)[b"link"] for e in heads] == [b"</a.css>"]
    [final] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(final.headers)[b"content-length"] == b"5"
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"hello"
    assert not session.streams and len(host.pool) == 1  # clean: pooled again


def test_bytes_after_a_bodiless_response_are_not_trusted() -> None:
    host, session, client = setup()
    client.get("/empty")
    back = connect(host)
    back.take()
    answer(host, back, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    events = client.events()
    [final] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(final.headers)[b":status"] == b"204"
    assert not session.streams and not host.pool  # the connection is closed, not pooled


def test_a_response_head_larger_than_the_buffer_is_a_502() -> None:
    host, _session, client = setup()
    client.get("/huge")
    back = connect(host)
    back.take()
    answer(host, back, b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * (host.buffer_size + 10))
    events = client.events()
    [final] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(final.headers)[b":status"] == b"502"


def test_a_large_response_read_at_once_goes_to_the_client_in_one_write() -> None:
    """The backend is read while its reads come full (h1_exchange.MAX_READS): a 100 KiB
    response already there is read, framed and written in one turn, its body after the head
    handed on as a view of the read (the bytes arrive whole)."""
    host, session, client = setup()
    client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.conn.increment_flow_control_window(1 << 20)
    client.push()
    client.events()
    stream = client.get("/big")
    back = connect(host)
    back.take()
    body = bytes(range(256)) * 400  # 102,400 bytes: two reads of 64 KiB
    writes: list[int] = []
    send = client.sock.sendmsg

    def counted(parts: list[bytes | memoryview]) -> int:
        writes.append(len(parts))
        return send(parts)

    client.sock.sendmsg = counted  # type: ignore[method-assign]
    answer(host, back, b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n" + body)
    assert not back.incoming
    assert len(writes) == 1
    events = client.events()
    got = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert got == body
    assert [e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)] == [stream]
    assert not session.streams and len(host.pool) == 1


class DecryptedEof(FakeSocket):
    """A TLS stream whose client went away with the handshake's last bytes: `pending` says
    the session must read at once, and the read finds the end."""

    def pending(self) -> int:
        return 0


def test_a_client_gone_before_its_preface_is_counted_out_at_start() -> None:
    """A session counted among the worker's, then started, closes at once when its client
    already left, and tells the host so (whose `session_closed` takes it out of `sessions`
    and gives its listener figures back): a session that closed before it was counted stayed
    counted, and held a soft stop forever."""
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER, h2c=True), 1)
    sock = DecryptedEof(FRONT_FD)
    sock.eof = True
    session = H2Session(host, host.proxy.listeners[LISTENER], sock, PEER)  # type: ignore[arg-type]
    host.sessions.add(session)
    assert FRONT_FD not in host.handlers  # nothing done before `start`
    session.start()
    assert session.closed and sock.closed
    assert session not in host.sessions and host.closed == [session]
    assert FRONT_FD not in host.handlers
