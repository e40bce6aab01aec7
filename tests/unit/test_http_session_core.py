"""The HTTP/1.1 session (mux/session*.py) driven by hand on a fake host (fake_host.py): no
socket, no process, no sleep. Each test feeds the client's and the backends' bytes, fires the
events epoll would report, and checks the exact bytes each side gets."""

from __future__ import annotations

import errno
import select
from typing import Any

from fake_host import FakeBackendSocket, FakeHost, FakeSocket

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    HttpListenerConfig,
)
from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import ANSWER, CLOSED, CONNECTING, EXCHANGE, HEAD

IN, OUT = select.EPOLLIN, select.EPOLLOUT
LISTENER = SocketAddress.parse("127.0.0.1:8080")
PEER = ("203.0.113.9", 5555)
FRONT_FD = 10

GET = b"GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def forwarded(request_line: bytes, headers: bytes, request_id: bytes) -> bytes:
    """The head a backend gets from PEER on LISTENER (http1/forwarding.py)."""
    return (
        request_line
        + headers
        + b"\r\nX-Forwarded-For: 203.0.113.9"
        + b'\r\nForwarded: proto=http;for="203.0.113.9:5555";by=127.0.0.1'
        + b"\r\nX-Forwarded-Port: 8080\r\nX-Forwarded-Proto: http"
        + b"\r\nX-Request-Id: "
        + request_id
        + b"\r\nSozu-Id: "
        + request_id
        + b"\r\n\r\n"
    )


def setup(backends: int = 1, **listener: Any) -> tuple[FakeHost, HttpSession, FakeSocket]:
    """A host with an HTTP listener routing example.com to cluster `app` (backends on ports
    9001...), and one client connection accepted on it."""
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER, **listener), backends)
    client = FakeSocket(FRONT_FD)
    session = HttpSession(host, host.proxy.listeners[LISTENER], client, PEER)  # type: ignore[arg-type]
    host.sessions.add(session)
    return host, session, client


def send(host: FakeHost, client: FakeSocket, data: bytes) -> None:
    client.incoming += data
    host.fire(FRONT_FD, IN)


def connect_backend(host: FakeHost, index: int = -1) -> FakeBackendSocket:
    """The backend connection being opened: it connects (EPOLLOUT) and gets the request."""
    back = host.backend_sockets[index]
    assert host.masks[back.fd] == OUT  # waiting for the connect
    host.fire(back.fd, OUT)
    return back


def answer(host: FakeHost, back: FakeBackendSocket, data: bytes) -> None:
    back.incoming += data
    host.fire(back.fd, IN)


def relayed(body: bytes, request_id: bytes, head: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """What the client gets for a keep-alive `head` + Content-Length response."""
    return head + b"\r\nContent-Length: %d\r\nSozu-Id: %s\r\n\r\n%s" % (
        len(body),
        request_id,
        body,
    )


def test_a_get_is_forwarded_with_forwarding_headers_and_its_answer_relayed() -> None:
    host, session, client = setup()
    send(host, client, GET)
    assert session.phase == CONNECTING and host.masks[FRONT_FD] == 0  # client waits unread
    back = connect_backend(host)
    assert back.connected_to == ("127.0.0.1", 9001)
    assert back.take() == forwarded(
        b"GET /path?q=1 HTTP/1.1", b"\r\nHost: example.com\r\nUser-Agent: t", b"REQ-1"
    )
    assert session.phase == EXCHANGE and host.masks == {FRONT_FD: IN, back.fd: IN}
    answer(host, back, OK)
    assert client.take() == relayed(b"hello", b"REQ-1")
    assert session.phase == HEAD and not client.shut and not client.closed
    assert host.counters.backend_connections == 1
    assert host.ended is not None and [end[3] for end in host.ended] == [200]


def test_keep_alive_reuses_the_backend_connection() -> None:
    host, session, client = setup()
    send(host, client, GET)
    back = connect_backend(host)
    answer(host, back, OK)
    back.take(), client.take()
    send(host, client, GET)
    assert len(host.backend_sockets) == 1 and session.phase == EXCHANGE  # no new connect
    assert back.take() == forwarded(
        b"GET /path?q=1 HTTP/1.1", b"\r\nHost: example.com\r\nUser-Agent: t", b"REQ-2"
    )
    answer(host, back, OK)
    assert client.take() == relayed(b"hello", b"REQ-2")
    assert host.counters.backend_connections == 1


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    host, session, client = setup()
    second = b"GET /two HTTP/1.1\r\nHost: example.com\r\n\r\n"
    send(host, client, GET + second)
    back = connect_backend(host)
    assert back.take().startswith(b"GET /path?q=1 ")  # only the first one so far
    answer(host, back, OK)
    assert back.take() == forwarded(b"GET /two HTTP/1.1", b"\r\nHost: example.com", b"REQ-2")
    answer(host, back, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
    assert client.take() == relayed(b"hello", b"REQ-1") + relayed(b"two", b"REQ-2")
    assert len(host.backend_sockets) == 1 and session.phase == HEAD


def test_no_route_gets_404_and_the_connection_half_closes() -> None:
    host, session, client = setup()
    send(host, client, b"GET / HTTP/1.1\r\nHost: unknown.example\r\n\r\n")
    sent = client.take()
    assert sent.startswith(b"HTTP/1.1 404 Not Found\r\n") and b"Sozu-Id: REQ-1" in sent
    assert session.phase == ANSWER and client.shut and host.backend_sockets == []
    assert host.metrics.answers == {404: 1}
    client.eof = True
    host.fire(FRONT_FD, IN)  # the client's FIN ends the linger
    assert session.phase == CLOSED and client.closed and session in host.closed


def test_a_malformed_head_gets_400() -> None:
    host, session, client = setup()
    send(host, client, b"GET / HTTP/1.1\r\nHost example.com\r\n\r\n")  # no colon
    assert client.take().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert session.phase == ANSWER and host.backend_sockets == []


def test_a_head_stalled_past_the_request_timeout_gets_408() -> None:
    host, session, client = setup(request_timeout=10)
    send(host, client, b"GET / HTTP/1.1\r\nHost: exa")
    assert session.phase == HEAD and client.sent == b""
    host.advance(9.5)
    assert client.sent == b""  # not yet
    host.advance(1.0)
    assert client.take().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert session.phase == ANSWER and host.counters.timeouts == 1


def test_every_backend_refusing_gets_503_after_trying_each_once() -> None:
    host, session, client = setup(backends=3)
    host.refused = {9001, 9002, 9003}
    send(host, client, GET)
    ports = sorted(sock.address.port for sock in host.backend_sockets)
    assert ports == [9001, 9002, 9003] and all(s.closed for s in host.backend_sockets)
    assert client.take().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert session.phase == ANSWER and host.metrics.answers == {503: 1}
    figures = host.metrics.cluster("app")
    assert figures.connect_errors == 3 and figures.retries == 2  # the first try is no retry
    assert {b: figures.backend(b).connect_errors for b in ("b1", "b2", "b3")} == {
        "b1": 1,
        "b2": 1,
        "b3": 1,
    }


def test_a_connect_failing_later_goes_to_the_next_backend() -> None:
    host, session, client = setup(backends=2)
    send(host, client, GET)
    first = host.backend_sockets[0]
    first.error = errno.ECONNREFUSED
    host.fire(first.fd, OUT)  # the connect's outcome: refused
    assert first.closed and len(host.backend_sockets) == 2
    second = connect_backend(host)
    assert second.take().startswith(b"GET /path?q=1 ") and session.phase == EXCHANGE
    assert host.metrics.cluster("app").retries == 1


def test_a_bad_response_head_gets_502() -> None:
    host, session, client = setup()
    send(host, client, GET)
    back = connect_backend(host)
    answer(host, back, b"HTTP/1.1 2x0 OK\r\n\r\n")
    assert client.take().startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert back.closed and session.phase == ANSWER


def test_a_chunked_request_body_is_forwarded_as_it_comes() -> None:
    host, session, client = setup()
    head = b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    send(host, client, head + b"5\r\nhello\r\n")
    back = connect_backend(host)
    assert (
        back.take()
        == forwarded(
            b"POST /up HTTP/1.1",
            b"\r\nHost: example.com\r\nTransfer-Encoding: chunked",
            b"REQ-1",
        )
        + b"5\r\nhello\r\n"
    )
    assert not session.request_done
    send(host, client, b"6\r\n world\r\n0\r\n\r\n")
    assert back.take() == b"6\r\n world\r\n0\r\n\r\n" and session.request_done
    answer(host, back, OK)
    assert client.take() == relayed(b"hello", b"REQ-1")


def test_a_full_client_socket_stops_reading_the_backend() -> None:
    host, session, client = setup()
    send(host, client, GET)
    back = connect_backend(host)
    body = bytes(range(256)) * 160  # 40 KiB: more than one relay buffer
    client.room = 100
    answer(host, back, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert len(client.sent) == 100
    assert host.masks[FRONT_FD] & OUT and not host.masks[back.fd] & IN  # backend not read
    waiting = len(back.incoming)
    assert waiting > 0  # the rest of the body stays in the backend's socket
    host.fire(back.fd, IN)  # a stale readiness: still not read
    assert len(back.incoming) == waiting
    client.room = None
    for _ in range(100):  # the client drains: the backend is read again
        if session.phase != EXCHANGE:
            break
        if host.masks[FRONT_FD] & OUT:
            host.fire(FRONT_FD, OUT)
        if host.masks.get(back.fd, 0) & IN:
            host.fire(back.fd, IN)
    assert client.take() == relayed(body, b"REQ-1")
    assert back.incoming == b"" and session.phase == HEAD
