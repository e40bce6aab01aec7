"""HTTP/1.1 clients of an `http2` cluster (mux/h1_stream.py) driven by hand on the fake host: the
client is a FakeSocket, the h2c backend connection a fake socket whose peer is a sans-IO h2
server (the h2 library) the test speaks for. No socket, no sleep."""

from __future__ import annotations

import select
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from fake_host import FakeBackendSocket, FakeHost, FakeSocket
from h2.errors import ErrorCodes

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Cluster, HttpListenerConfig, Request
from dataplane.proxy.http1.head import RequestParser
from dataplane.proxy.http2.translate import asks_trailers, forwarded_to_h2
from dataplane.proxy.mux import h2_backends
from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import CLOSED, H2, HEAD

IN, OUT = select.EPOLLIN, select.EPOLLOUT
LISTENER = SocketAddress.parse("127.0.0.1:8080")
PEER = ("203.0.113.9", 5555)
FRONT_FD = 10


class H2cSocket(FakeBackendSocket):
    """The h2c backend connection's socket (H2Backend makes its own: patched in)."""

    def setblocking(self, flag: bool) -> None:
        assert not flag

    def send(self, data: bytes | bytearray) -> int:
        return self.sendmsg([bytes(data)])


class Backend:
    """The backend's side of one h2c connection: an h2 server the test speaks for."""

    def __init__(self, host: FakeHost, sock: H2cSocket) -> None:
        self.host = host
        self.sock = sock
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.heads: dict[int, dict[bytes, bytes]] = {}
        self.fields: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.trailers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.ended: set[int] = set()
        self.resets: list[int] = []

    def read(self) -> list[Any]:
        """Take what the proxy sent; acknowledge received DATA only when told."""
        events = self.conn.receive_data(self.sock.take())
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.fields[event.stream_id] = list(event.headers)
                self.heads[event.stream_id] = dict(event.headers)
                self.bodies[event.stream_id] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] += event.data
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers[event.stream_id] = list(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.resets.append(event.stream_id)
        return events

    def write(self) -> None:
        self.sock.incoming += self.conn.data_to_send()
        self.host.fire(self.sock.fd, IN)

    def respond(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], body: bytes | None = None
    ) -> None:
        self.conn.send_headers(stream_id, [(b":status", b"200"), *fields], end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.write()


@pytest.fixture(autouse=True)
def _fake_h2c_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fds = iter(range(500, 600))
    made: list[H2cSocket] = []

    def factory(*_: Any) -> H2cSocket:
        sock = H2cSocket(next(fds), SocketAddress.parse("127.0.0.1:9001"))
        made.append(sock)
        return sock

    monkeypatch.setattr(h2_backends.socket, "socket", factory)
    _fake_h2c_sockets.made = made  # type: ignore[attr-defined]
    yield


def made() -> list[H2cSocket]:
    return _fake_h2c_sockets.made  # type: ignore[attr-defined,no-any-return]


def setup(**cluster: Any) -> tuple[FakeHost, HttpSession, FakeSocket]:
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER))
    host.proxy.apply(Request.of(add_cluster=Cluster(cluster_id="app", http2=True, **cluster)))
    return host, *client(host)


def client(host: FakeHost, fd: int = FRONT_FD) -> tuple[HttpSession, FakeSocket]:
    sock = FakeSocket(fd)
    session = HttpSession(host, host.proxy.listeners[LISTENER], sock, PEER)  # type: ignore[arg-type]
    host.sessions.add(session)
    return session, sock


def send(host: FakeHost, sock: FakeSocket, data: bytes, fd: int = FRONT_FD) -> None:
    sock.incoming += data
    host.fire(fd, IN)


def connected(host: FakeHost, index: int = -1) -> Backend:
    """The h2c connection being opened connects; its backend reads what came."""
    sock = made()[index]
    host.fire(sock.fd, OUT)
    backend = Backend(host, sock)
    backend.read()
    backend.write()  # its SETTINGS (and the ack of ours)
    backend.read()
    return backend


GET = b"GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n"


def test_the_forwarded_head_as_h2_fields() -> None:
    head = (
        b"POST /a HTTP/1.1\r\nHost: example.com:8080\r\nCookie: a=1; b=2\r\n"
        b"Transfer-Encoding: chunked\r\nKeep-Alive: 5\r\nContent-Length: 3\r\nX-A: b\r\n\r\n"
    )
    method, scheme, authority, path, fields = forwarded_to_h2(head, True)
    assert (method, scheme, authority, path) == (b"POST", b"http", b"example.com:8080", b"/a")
    assert fields == [
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"content-length", b"3"),
        (b"x-a", b"b"),
        (b"te", b"trailers"),
    ]
    parse = RequestParser().parse
    assert asks_trailers(parse(b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip, trailers\r\n\r\n"))
    assert not asks_trailers(parse(b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n"))
    assert not asks_trailers(parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-TE: trailers\r\n\r\n"))


def test_a_get_becomes_an_h2_stream_and_its_answer_an_http11_response() -> None:
    host, session, sock = setup()
    send(host, sock, GET + b"Cookie: a=1; b=2\r\nTE: trailers, gzip\r\nX-Up: 1, 2\r\n\r\n")
    assert session.phase == H2
    backend = connected(host)
    fields = backend.fields[1]
    head = backend.heads[1]
    assert fields[:4] == [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"example.com"),
        (b":path", b"/path?q=1"),
    ]
    assert head[b"cookie"] == b"a=1; b=2"  # crumbs on the wire (h2 joins them on receipt)
    assert head[b"te"] == b"trailers" and head[b"x-up"] == b"1, 2"
    assert head[b"x-forwarded-for"] == b"203.0.113.9" and head[b"sozu-id"] == b"REQ-1"
    assert b"host" not in head and b"connection" not in head
    assert 1 in backend.ended  # no body: END_STREAM on the head
    backend.respond(1, [(b"content-length", b"5"), (b"x-b", b"v")], b"hello")
    assert sock.take() == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-b: v\r\nSozu-Id: REQ-1\r\n\r\nhello"
    )
    assert session.phase == HEAD and session.h2 is None
    (end,) = host.ended or []
    assert end[3] == 200 and end[6] == "b1"  # status, backend id
    # The next request of this client, and another client's: streams 3 and 5 of the same
    # backend connection.
    send(host, sock, GET + b"\r\n")
    other, other_sock = client(host, 11)
    send(host, other_sock, GET + b"Connection: close\r\n\r\n", 11)
    backend.read()
    assert set(backend.heads) == {1, 3, 5} and len(made()) == 1
    backend.respond(5, [(b"content-length", b"2")], b"ok")
    assert other_sock.take().startswith(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close"
    )
    assert other.phase == CLOSED and other_sock.closed  # closed after its answer
    backend.respond(3, [], b"no length")  # no content-length: chunked
    assert sock.take() == (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nSozu-Id: REQ-2\r\n\r\n"
        b"9\r\nno length\r\n0\r\n\r\n"
    )


def test_a_chunked_upload_crosses_as_data_and_its_trailers_as_h2_trailers() -> None:
    host, session, sock = setup()
    send(
        host, sock, b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    backend = connected(host)
    assert b"transfer-encoding" not in backend.heads[1] and 1 not in backend.ended
    send(host, sock, b"5\r\nhello\r\n6\r\n worl")
    send(host, sock, b"d\r\n0\r\nx-sum: 42\r\n\r\n")
    backend.read()
    assert bytes(backend.bodies[1]) == b"hello world"
    assert backend.trailers[1] == [(b"x-sum", b"42")] and 1 in backend.ended
    backend.respond(1, [(b"content-length", b"0")])
    assert sock.take().startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n")
    assert session.phase == HEAD


def test_response_trailers_only_for_a_client_that_sent_te_trailers() -> None:
    for te, tail in ((b"TE: trailers\r\n", b"0\r\nx-checksum: abc\r\n\r\n"), (b"", b"0\r\n\r\n")):
        host, session, sock = setup()
        send(host, sock, GET + te + b"\r\n")
        backend = connected(host)
        backend.conn.send_headers(1, [(b":status", b"200")])
        backend.conn.send_data(1, b"body")
        backend.conn.send_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
        backend.write()
        assert sock.take().endswith(b"\r\n\r\n4\r\nbody\r\n" + tail)
        assert session.phase == HEAD


def test_head_100_continue_and_an_http10_client() -> None:
    host, _session, sock = setup()
    send(host, sock, b"HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n")
    backend = connected(host)
    backend.respond(1, [(b"content-length", b"1000")])
    assert sock.take() == b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nSozu-Id: REQ-1\r\n\r\n"
    send(host, sock, b"PUT /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n"
         b"Expect: 100-continue\r\n\r\n")  # fmt: skip
    backend.read()
    assert backend.heads[3][b"expect"] == b"100-continue"
    assert backend.heads[3][b"content-length"] == b"2"
    backend.conn.send_headers(3, [(b":status", b"100")])
    backend.write()
    assert sock.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    send(host, sock, b"ok")
    backend.read()
    assert bytes(backend.bodies[3]) == b"ok" and 3 in backend.ended
    backend.respond(3, [], b"done")
    assert b"\r\n4\r\ndone\r\n0\r\n\r\n" in sock.take()
    # HTTP/1.0: no 1xx, no chunked coding: the body ends with the connection.
    old, old_sock = client(host, 11)
    send(host, old_sock, b"GET /old HTTP/1.0\r\nHost: example.com\r\n\r\n", 11)
    backend.read()
    backend.conn.send_headers(5, [(b":status", b"100")])
    backend.respond(5, [], b"old")
    data = old_sock.take()
    assert data.startswith(b"HTTP/1.1 200 OK\r\nconnection: close\r\n") and data.endswith(b"old")
    assert b"chunked" not in data and old.phase != H2


def test_backend_resets_give_502_or_a_cut_response_and_the_connection_stays() -> None:
    host, _session, sock = setup()
    send(host, sock, GET + b"\r\n")
    backend = connected(host)
    backend.conn.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
    backend.write()
    assert sock.take().startswith(b"HTTP/1.1 502 Bad Gateway")
    other, other_sock = client(host, 11)
    send(host, other_sock, GET + b"\r\n", 11)
    backend.read()
    backend.conn.send_headers(3, [(b":status", b"200")])
    backend.conn.send_data(3, b"part")
    backend.conn.reset_stream(3, ErrorCodes.INTERNAL_ERROR)
    backend.write()
    assert other_sock.take().endswith(b"4\r\npart\r\n") and other.phase == CLOSED
    assert other_sock.closed and len(made()) == 1 and not made()[0].closed


def test_a_silent_backend_gets_504_after_back_timeout_and_its_stream_reset() -> None:
    host, session, sock = setup(back_timeout=5)
    send(host, sock, GET + b"\r\n")
    backend = connected(host)
    host.advance(4)
    assert session.phase == H2
    host.advance(2)
    assert sock.take().startswith(b"HTTP/1.1 504 Gateway Timeout")
    backend.read()
    assert backend.resets == [1]


def test_goaway_sends_the_next_streams_to_a_new_connection() -> None:
    host, _session, sock = setup()
    send(host, sock, GET + b"\r\n")
    backend = connected(host)
    backend.conn.send_headers(1, [(b":status", b"200"), (b"content-length", b"1")])
    backend.conn.send_data(1, b"x", end_stream=True)
    backend.conn.close_connection(last_stream_id=1)
    backend.write()
    assert sock.take().endswith(b"\r\n\r\nx")
    send(host, sock, GET + b"\r\n")
    assert len(made()) == 2
    second = connected(host)
    assert second.heads[1][b":path"] == b"/path?q=1"
    second.respond(1, [(b"content-length", b"2")], b"ok")
    assert sock.take().endswith(b"\r\n\r\nok")


def test_uploads_and_downloads_hold_at_most_a_window() -> None:
    host, session, sock = setup()
    size = 200_000  # three times the backend's 65,535-byte stream window
    send(host, sock, b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n" % size)
    backend = connected(host)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sent = 0
    while sent < size:
        if host.masks[FRONT_FD] & IN:  # the proxy reads the client: hand it a piece
            piece = payload[sent : sent + 4096]
            send(host, sock, piece)
            sent += len(piece)
            held = session.h2.exchange.body if session.h2 and session.h2.exchange else []
            assert sum(map(len, held)) <= 4096  # never more than one read waits
            continue
        received = sum(len(e.data) for e in backend.read() if isinstance(e, h2.events.DataReceived))
        assert received or backend.bodies[1], "the proxy stopped reading with nothing sent"
        backend.conn.acknowledge_received_data(len(backend.bodies[1]) - 0, 1)
        backend.bodies[1] = bytearray()  # acknowledged: give the window back
        backend.write()
    backend.read()
    assert 1 in backend.ended
    # The download: a client that takes nothing makes the backend's window the bound.
    sock.room = 0
    window = backend.conn.local_flow_control_window(1)
    backend.conn.send_headers(1, [(b":status", b"200"), (b"content-length", b"%d" % (2 * window))])
    while backend.conn.local_flow_control_window(1):
        piece = min(backend.conn.local_flow_control_window(1), 16384)
        backend.conn.send_data(1, b"z" * piece)
        backend.write()
    backend.read()
    assert backend.conn.local_flow_control_window(1) == 0  # nothing credited back yet
    assert session.to_front is not None
    assert sum(map(len, session.to_front)) <= window + 1024  # the window, and a head
    sock.room = None
    host.fire(FRONT_FD, OUT)
    backend.read()
    assert backend.conn.local_flow_control_window(1) == window  # credited once written
    assert sock.take().endswith(b"z" * window)


def test_a_refused_stream_is_retried_unless_its_body_began() -> None:
    host, _session, sock = setup()
    send(host, sock, GET + b"\r\n")
    backend = connected(host)
    backend.conn.close_connection(last_stream_id=0)  # stream 1 was not processed
    backend.write()
    assert len(made()) == 2  # retried on a new connection
    second = connected(host)
    assert second.heads[1][b":path"] == b"/path?q=1"
    second.respond(1, [(b"content-length", b"2")], b"ok")
    assert sock.take().endswith(b"\r\n\r\nok")
    # A request whose body began to go out cannot be sent again: 502.
    send(host, sock, b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhello")
    second.read()
    assert bytes(second.bodies[3]) == b"hello"
    second.conn.close_connection(last_stream_id=1)
    second.write()
    assert sock.take().startswith(b"HTTP/1.1 502 Bad Gateway")
    assert len(made()) == 2
