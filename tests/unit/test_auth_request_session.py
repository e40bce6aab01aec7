"""External authorisation in the HTTP/1.1 session (mux/auth_request.py), driven by hand on a
fake host: the request waits for the auth cluster's verdict, is forwarded with the copied
headers, answered 401/403/302 (kept alive) or 500, and a client that goes away cancels the
sub-request. No socket, no sleep."""

from __future__ import annotations

import select

import pytest
from fake_host import FakeBackendSocket, FakeHost, FakeSocket

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    AuthRequest,
    Cluster,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import ANSWER, AUTH, CLOSED, CONNECTING, HEAD

pytestmark = pytest.mark.timeout(10)

IN, OUT = select.EPOLLIN, select.EPOLLOUT
LISTENER = SocketAddress.parse("127.0.0.1:8080")
PEER = ("203.0.113.9", 5555)
FRONT_FD = 10
AUTH_PORT = 9100
GET = b"GET /page?q=1 HTTP/1.1\r\nHost: guarded.com\r\nCookie: s=1\r\nX-User: mallory\r\n\r\n"
ALLOWED = b"HTTP/1.1 202 Accepted\r\nX-User: alice\r\nContent-Length: 0\r\n\r\n"


def setup(**auth: object) -> tuple[FakeHost, HttpSession, FakeSocket]:
    host = FakeHost()
    host.route(HttpListenerConfig(address=LISTENER))
    apply = host.proxy.apply
    apply(Request.of(add_cluster=Cluster(cluster_id="auth", back_timeout=5)))
    address = SocketAddress.parse(f"127.0.0.1:{AUTH_PORT}")
    apply(Request.of(add_backend=AddBackend(cluster_id="auth", backend_id="a1", address=address)))
    policy = AuthRequest(cluster_id="auth", path="/check", response_headers=["X-User"])
    for name, value in auth.items():
        setattr(policy, name, value)
    front = RequestHttpFrontend(
        address=LISTENER, hostname="guarded.com", cluster_id="app", auth_request=policy
    )
    apply(Request.of(add_http_frontend=front))
    client = FakeSocket(FRONT_FD)
    session = HttpSession(host, host.proxy.listeners[LISTENER], client, PEER)  # type: ignore[arg-type]
    host.sessions.add(session)
    return host, session, client


def send(host: FakeHost, client: FakeSocket, data: bytes) -> None:
    client.incoming += data
    host.fire(FRONT_FD, IN)


def asked(host: FakeHost) -> FakeBackendSocket:
    """The auth connection being opened: it connects and gets the sub-request."""
    auth = host.backend_sockets[-1]
    assert auth.address.port == AUTH_PORT and host.masks[auth.fd] == OUT
    host.fire(auth.fd, OUT)
    return auth


def reply(host: FakeHost, sock: FakeBackendSocket, data: bytes) -> None:
    sock.incoming += data
    host.fire(sock.fd, IN)


def test_an_allowed_request_is_forwarded_with_the_copied_headers() -> None:
    host, session, client = setup()
    send(host, client, GET)
    assert session.phase == AUTH
    auth = asked(host)
    sub = auth.take()
    assert sub.startswith(b"GET /check HTTP/1.1\r\n")
    for line in (
        b"Host: guarded.com",
        b"Cookie: s=1",
        b"X-Original-URL: http://guarded.com/page?q=1",
        b"X-Original-Method: GET",
        b"X-Sent-From: nginx-ingress-controller",
        b"X-Auth-Request-Redirect: /page?q=1",
        b"X-Forwarded-For: 203.0.113.9",
    ):
        assert b"\r\n" + line + b"\r\n" in sub, line
    reply(host, auth, ALLOWED)
    assert session.phase == CONNECTING and host.pool._idle  # the auth connection is pooled
    app = host.backend_sockets[-1]
    assert app.address.port == 9001
    host.fire(app.fd, OUT)
    forwarded = app.take()
    assert forwarded.startswith(b"GET /page?q=1 HTTP/1.1\r\n")
    assert b"\r\nX-User: alice\r\n" in forwarded and b"mallory" not in forwarded
    reply(host, app, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert client.take().endswith(b"\r\n\r\nok") and session.phase == HEAD


def test_a_missing_copied_header_is_removed_from_the_request() -> None:
    host, _session, client = setup()
    send(host, client, GET)
    reply(host, asked(host), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    app = host.backend_sockets[-1]
    host.fire(app.fd, OUT)
    assert b"X-User" not in app.take()


@pytest.mark.parametrize("status", [401, 403])
def test_a_denial_is_answered_and_the_connection_serves_the_next_request(status: int) -> None:
    host, session, client = setup()
    send(host, client, GET)
    auth = asked(host)
    reply(host, auth, b"HTTP/1.1 %d No\r\nContent-Length: 2\r\n\r\nno" % status)
    sent = client.take()
    assert sent.startswith(b"HTTP/1.1 %d " % status) and b"Content-Length: " in sent
    assert session.phase == HEAD and not client.shut
    assert [b for b in host.backend_sockets if b.address.port == 9001] == []  # app unasked
    send(host, client, GET)  # the pooled auth connection asks again
    assert session.phase == AUTH and len(host.backend_sockets) == 1
    assert auth.take().startswith(b"GET /check ")
    reply(host, auth, ALLOWED)
    assert session.phase == CONNECTING


def test_a_401_with_a_signin_url_is_a_302_carrying_the_original_url() -> None:
    host, _session, client = setup(signin="https://login.example/start?x=$host")
    send(host, client, GET)
    reply(host, asked(host), b"HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n")
    sent = client.take()
    assert sent.startswith(b"HTTP/1.1 302 Found\r\n")
    location = b"https://login.example/start?x=guarded.com&rd=http://guarded.com/page%3Fq%3D1"
    assert b"\r\nLocation: " + location + b"\r\n" in sent


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
        b"garbage\r\n\r\n",
    ],
)
def test_other_answers_are_500(answer: bytes) -> None:
    host, session, client = setup()
    send(host, client, GET)
    reply(host, asked(host), answer)
    assert client.take().startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert session.phase == ANSWER and len(host.backend_sockets) == 1


def test_an_unreachable_auth_service_is_500() -> None:
    host, session, client = setup()
    host.refused.add(AUTH_PORT)
    send(host, client, GET)
    assert client.take().startswith(b"HTTP/1.1 500 ")
    assert session.phase == ANSWER and all(
        b.address.port == AUTH_PORT for b in host.backend_sockets
    )


def test_a_silent_auth_service_times_out_with_500() -> None:
    host, session, client = setup()
    send(host, client, GET)
    auth = asked(host)
    host.advance(4.0)
    assert session.phase == AUTH
    host.advance(2.5)  # the auth cluster's back_timeout (5s) passed
    assert client.take().startswith(b"HTTP/1.1 500 ") and auth.closed


def test_a_client_going_away_cancels_the_sub_request() -> None:
    host, session, client = setup()
    send(host, client, GET)
    auth = asked(host)
    client.eof = True
    host.fire(FRONT_FD, IN)
    assert session.phase == CLOSED and auth.closed and auth.fd not in host.masks
    assert session.auth is None
    host.advance(30.0)  # no timer left to fire on a dead exchange


def test_a_pooled_connection_closed_under_us_is_retried_once_fresh() -> None:
    host, session, client = setup()
    send(host, client, GET)
    auth = asked(host)
    reply(host, auth, ALLOWED)
    app = host.backend_sockets[-1]
    host.fire(app.fd, OUT)
    reply(host, app, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    client.take()
    # The next request: the app's connection stays; the pooled auth one is dead.
    send(host, client, GET)
    auth.eof = True
    host.fire(auth.fd, IN)
    fresh = asked(host)
    assert fresh is not auth and fresh.take().startswith(b"GET /check ")
    reply(host, fresh, b"HTTP/1.1 403 No\r\nContent-Length: 0\r\n\r\n")
    assert client.take().startswith(b"HTTP/1.1 403 ") and session.phase == HEAD


def test_a_request_body_waits_and_follows_once_allowed() -> None:
    host, _session, client = setup()
    send(host, client, b"POST /up HTTP/1.1\r\nHost: guarded.com\r\nContent-Length: 4\r\n\r\nda")
    auth = asked(host)
    assert b"Content-Length" not in auth.take()
    send(host, client, b"ta")  # buffered while the verdict is pending
    reply(host, auth, ALLOWED)
    app = host.backend_sockets[-1]
    host.fire(app.fd, OUT)
    assert app.take().endswith(b"\r\n\r\ndata")


def test_a_denied_request_with_a_body_is_answered_and_closed() -> None:
    host, session, client = setup()
    send(host, client, b"POST /up HTTP/1.1\r\nHost: guarded.com\r\nContent-Length: 4\r\n\r\ndata")
    reply(host, asked(host), b"HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n")
    assert client.take().startswith(b"HTTP/1.1 401 ") and session.phase == ANSWER


def test_a_missing_auth_cluster_is_500() -> None:
    host, _session, client = setup(cluster_id="nope")
    send(host, client, GET)
    assert client.take().startswith(b"HTTP/1.1 500 ") and host.backend_sockets == []
