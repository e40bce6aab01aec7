"""External authorisation, the I/O: the sub-request a request waits for.

`start` is called by an HTTP/1.1 session (phase AUTH) and `wait_on_stream` by an HTTP/2 stream
once a request is routed to a route with an `auth_request` (routing/auth_request.py). The
session stops reading its client (bytes already read stay buffered, bounded by the client
buffer); a stream holds the body its client sends meanwhile without crediting it, so the
client's flow-control window bounds it (`StreamWait`). An `AuthExchange` asks a backend of the
cluster, on a connection from the worker's pool (or a new one: the same connect, retry and
health bookkeeping as the session's own, mux/backend_choice.py). The answer's head is read
into a bounded buffer (MAX_ANSWER bytes, its body too when it came with it, so the connection
goes back to the pool); it gives the verdict:

- 2xx: the request is forwarded (`_forward`), with the copied headers as request edits;
- 401/403: answered as such (a 401 as a 302 to the signin URL when there is one), keeping the
  connection alive when the request had no body (a body would have to be read and dropped);
- anything else, a connection failure, no backend, a missing cluster, an answer larger than
  MAX_ANSWER, or the cluster's connect/back timeout passing: 500.

A client that goes away closes its session (or resets its stream), which cancels the
exchange (`cancel`). What waits is a `Waiter`: the verdict goes to its `auth_*` methods
(`SessionWait` for an HTTP/1.1 session, `StreamWait` for an HTTP/2 stream).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Protocol

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.forwarding import forward_request
from dataplane.proxy.http1.head import HEAD_END, LENGTH, NO_BODY, ResponseHead, ResponseParser
from dataplane.proxy.mux import backend_events
from dataplane.proxy.mux.backend_choice import next_backend
from dataplane.proxy.mux.session_fields import (
    AUTH,
    CLOSED,
    EPOLLIN,
    EPOLLOUT,
    EXCHANGE,
    MAX_CONNECT_TRIES,
)
from dataplane.proxy.routing.policy import Edits
from dataplane.proxy.routing.route import HSTS_HEADER
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.command.address import SocketAddress  # noqa: F401
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.forwarding import ConnectionContext
    from dataplane.proxy.http1.head import RequestHead
    from dataplane.proxy.http2.events import Fields
    from dataplane.proxy.listener import HttpListener
    from dataplane.proxy.mux.backend_pool import BackendConnection
    from dataplane.proxy.mux.h2_stream import H2Stream
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.mux.session import HttpSession
    from dataplane.proxy.routing.auth_request import AuthPolicy

MAX_ANSWER = 32768  # bytes of the auth answer kept (head, and body when it comes with it)
_PARSER = ResponseParser()
_REASONS = {302: b"Found", 401: b"Unauthorized", 403: b"Forbidden"}


class Waiter(Protocol):
    """What a sub-request is made for and reports to."""

    @property
    def loop(self) -> Host: ...

    @property
    def listener(self) -> HttpListener: ...

    @property
    def context(self) -> ConnectionContext: ...

    @property
    def request_id(self) -> bytes: ...

    def auth_done(self, exchange: AuthExchange) -> bool:
        """The exchange ends: whether it is still waited for."""
        ...

    def auth_allowed(self, edits: Edits) -> None: ...

    def auth_denied(self, status: int, message: str, location: str | None, hsts: str) -> None: ...


class AuthExchange:
    """One sub-request to the auth cluster, for one waiting session or stream."""

    __slots__ = (
        "body_limit",
        "cluster",
        "conn",
        "deadline",
        "edits",
        "failed",
        "head",
        "policy",
        "received",
        "request",
        "session",
        "target",
        "timer_slot",
        "to_send",
    )

    def __init__(
        self,
        session: Waiter,
        request: RequestHead,
        policy: AuthPolicy,
        auth_cluster: ClusterRuntime,
        target: ClusterRuntime,
        edits: Edits | None,
        body_limit: int | None,
    ) -> None:
        self.session = session
        self.policy = policy
        self.cluster = auth_cluster
        self.target = target  # the cluster the request goes to once allowed
        self.edits = edits
        self.body_limit = body_limit
        self.request = request
        forwarded = forward_request(request, session.context, session.request_id, b"")
        self.head = policy.request_head(forwarded, request, session.listener.scheme)
        self.to_send = b""
        self.received = bytearray()
        self.conn: BackendConnection | None = None
        self.failed: set[str] = set()
        self.deadline = 0.0
        self.timer_slot = NOT_FILED

    # -- the connection ---------------------------------------------------------------------

    def connect(self, pooled: bool = True) -> None:
        loop = self.session.loop
        cluster = self.cluster
        while len(self.failed) < MAX_CONNECT_TRIES:
            backend = next_backend(loop, cluster, None, self.failed)
            if backend is None:
                break
            conn = loop.pool.take(backend, cluster.cluster_id) if pooled else None
            if conn is not None:
                self._attach(conn)
                self._send()
                return
            conn = loop.pool.open(backend, cluster.cluster_id)
            code = conn.connect()
            if code in (0, errno.EINPROGRESS):
                loop.counters.backend_connections += 1
                self._attach(conn)
                self._wait(EPOLLOUT, cluster.connect_timeout)
                return
            conn.sock.close()
            backend_events.connect_failed(loop, cluster, backend)
            self.failed.add(backend.backend_id)
        self._verdict(500, "no backend of the auth cluster available")

    def _attach(self, conn: BackendConnection) -> None:
        self.conn = conn
        self.to_send = self.head
        self.received.clear()
        loop = self.session.loop
        if conn.fd in loop.handlers:  # pooled: registered while idle
            loop.set_handler(conn.fd, self.on_event)
        else:
            loop.register(conn.fd, self.on_event, EPOLLOUT)
            conn.mask = EPOLLOUT

    def _wait(self, mask: int, timeout: float) -> None:
        conn = self.conn
        assert conn is not None
        loop = self.session.loop
        if conn.mask != mask:
            loop.modify(conn.fd, mask)
            conn.mask = mask
        listener = self.session.listener
        fallback = listener.connect_timeout if mask == EPOLLOUT else listener.back_timeout
        loop.timers.arm(self, loop.now + (timeout or fallback))

    def on_event(self, events: int) -> None:
        conn = self.conn
        if conn is None:
            return
        if not conn.connected:
            loop = self.session.loop
            if conn.connect_error():
                backend_events.connect_failed(loop, self.cluster, conn.backend)
                self.failed.add(conn.backend.backend_id)
                self._drop()
                self.connect(pooled=False)
                return
            took = loop.now - conn.connect_started
            backend_events.connect_succeeded(loop, self.cluster, conn.backend, took)
            conn.connected = True
        if self.to_send:
            self._send()
        elif events & ~EPOLLOUT:
            self._read()

    def _send(self) -> None:
        conn = self.conn
        assert conn is not None
        try:
            sent = conn.sock.sendmsg([self.to_send])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._lost()
            return
        self.to_send = self.to_send[sent:]
        if self.to_send:
            self._wait(EPOLLOUT, self.cluster.back_timeout)
        else:
            self._wait(EPOLLIN, self.cluster.back_timeout)

    def _read(self) -> None:
        conn = self.conn
        assert conn is not None
        try:
            data = conn.sock.recv(MAX_ANSWER + 1 - len(self.received))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        received = self.received
        received += data
        at = received.find(HEAD_END)
        if at < 0:
            if len(received) > MAX_ANSWER:
                self._verdict(500, "auth answer head too large")
            return
        try:
            response = _PARSER.parse(bytes(received[: at + 4]))
        except HttpSyntaxError:
            self._verdict(500, "invalid answer from the auth service")
            return
        body = len(received) - at - 4
        framing = response.framing(self.policy.method.encode("ascii"))
        complete = framing == NO_BODY or (framing == LENGTH and body == response.content_length)
        if complete and response.keep_alive:
            conn.requests += 1
            self._release(keep=True)
        self._answer_from(response)

    def _lost(self) -> None:
        """The connection failed or closed before a whole answer head: a pooled connection
        closed under us is tried again once on a fresh one, else 500."""
        conn = self.conn
        assert conn is not None
        if conn.requests and not self.received and not self.failed:
            self._drop()
            self.failed.add("")  # the one retry
            self.connect(pooled=False)
            return
        self._verdict(500, "auth service closed the connection before answering")

    def on_timeout(self, now: float) -> None:
        if self.conn is not None:
            self._verdict(500, "auth service timeout")

    def _drop(self) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.close()

    def _release(self, keep: bool) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            if keep:
                self.session.loop.pool.give_back(conn)
            else:
                conn.close()

    def cancel(self) -> None:
        """The session closes: nothing will wait for the answer."""
        self.session.loop.timers.cancel(self)
        self._drop()

    # -- the verdict ------------------------------------------------------------------------

    def _answer_from(self, response: ResponseHead) -> None:
        status = response.status
        if 200 <= status < 300:
            self._allow(self.policy.copies(response))
        elif status in (401, 403):
            self._verdict(status, "")
        else:
            self._verdict(500, f"auth service answered {status}")

    def _allow(self, copied: tuple[tuple[str, str], ...]) -> None:
        if not self._finish():
            return
        edits = self.edits
        if edits is None:
            edits = Edits.__new__(Edits)
            edits.host = edits.path = None
            edits.request_headers, edits.response_headers = (), ()
        edits.request_headers += copied
        self.session.auth_allowed(edits)

    def _verdict(self, status: int, message: str) -> None:
        if not self._finish():
            return
        location = None
        if status == 401:
            location = self.policy.signin_location(self.request, self.session.listener.scheme)
            if location is not None:
                status = 302
        self.session.auth_denied(status, message, location, self.policy.hsts)

    def _finish(self) -> bool:
        """The exchange ends: whether what waited for it still does."""
        self.session.loop.timers.cancel(self)
        self._drop()
        return self.session.auth_done(self)


class SessionWait:
    """An HTTP/1.1 session in phase AUTH, as the exchange's `Waiter`."""

    __slots__ = ("body_limit", "session", "target")

    def __init__(self, session: HttpSession, target: ClusterRuntime, body_limit: int | None):
        self.session = session
        self.target = target
        self.body_limit = body_limit

    @property
    def loop(self) -> Host:
        return self.session.loop

    @property
    def listener(self) -> HttpListener:
        return self.session.listener

    @property
    def context(self) -> ConnectionContext:
        return self.session.context

    @property
    def request_id(self) -> bytes:
        return self.session.request_id

    def auth_done(self, exchange: AuthExchange) -> bool:
        session = self.session
        if session.auth is not exchange or session.phase != AUTH:
            return False
        session.auth = None
        return True

    def auth_allowed(self, edits: Edits) -> None:
        session = self.session
        request = session.request
        assert request is not None
        session.front_full = False  # reading resumes as the exchange needs it
        session._forward(request, self.target, edits, self.body_limit)
        if session.phase not in (CLOSED, AUTH):
            session._sync_masks()

    def auth_denied(self, status: int, message: str, location: str | None, hsts: str) -> None:
        session = self.session
        if status == 500:
            session._answer(500, message, hsts=hsts)
            return
        request = session.request
        assert request is not None
        if request.content_length or request.chunked:
            # The body would have to be read and dropped: answer and close instead.
            variables = {"REDIRECT_LOCATION": location} if location is not None else None
            session._answer(status, message, variables=variables, hsts=hsts)
            return
        _answer_kept_alive(session, status, location, hsts)


class StreamWait:
    """An HTTP/2 stream's exchange while its request waits for the verdict: the client's body
    and trailers are held (not credited: the stream's window bounds them), then replayed into
    the real exchange when the request is allowed, or credited and dropped when it is not."""

    __slots__ = ("auth", "body_limit", "held", "held_end", "held_trailers", "stream", "target")

    def __init__(self, stream: H2Stream, target: ClusterRuntime, body_limit: int | None):
        self.stream = stream
        self.target = target
        self.body_limit = body_limit
        self.auth: AuthExchange | None = None
        self.held: list[bytes] = []
        self.held_end = False
        self.held_trailers: Fields | None = None

    @property
    def loop(self) -> Host:
        return self.stream.loop

    @property
    def listener(self) -> HttpListener:
        return self.stream.session.listener

    @property
    def context(self) -> ConnectionContext:
        return self.stream.context

    @property
    def request_id(self) -> bytes:
        return self.stream.request_id

    # the stream's Exchange, while it waits

    def start(self) -> None:
        return None

    def send_body(self, data: bytes, end: bool) -> None:
        self.held.append(data)
        self.held_end = end

    def send_trailers(self, fields: Fields) -> None:
        self.held_trailers = fields

    def resume(self) -> None:
        return None

    def done(self) -> None:
        return None

    def cancel(self) -> None:
        auth, self.auth = self.auth, None
        if auth is not None:
            auth.cancel()
        self._credit()

    def _credit(self) -> None:
        size = sum(len(piece) for piece in self.held)
        self.held = []
        if size:
            self.stream.session.front.consumed(self.stream.stream_id, size)

    # the exchange's Waiter

    def auth_done(self, exchange: AuthExchange) -> bool:
        if self.auth is not exchange or self.stream.exchange is not self:
            return False
        self.auth = None
        return True

    def auth_allowed(self, edits: Edits) -> None:
        stream = self.stream
        stream.exchange = None
        client_done = stream.client_done
        if self.held or self.held_trailers is not None:
            stream.client_done = False  # the exchange takes the held body as still to come
        stream.forward(self.target, edits)
        stream.client_done = client_done
        exchange = stream.exchange
        if exchange is None:  # answered instead (a limit): nothing reads the body
            self._credit()
            return
        held, self.held = self.held, []
        for index, piece in enumerate(held):
            last = index == len(held) - 1
            exchange.send_body(piece, self.held_end and last and self.held_trailers is None)
        if self.held_trailers is not None:
            exchange.send_trailers(self.held_trailers)

    def auth_denied(self, status: int, message: str, location: str | None, hsts: str) -> None:
        stream = self.stream
        stream.exchange = None
        self._credit()
        variables = {"REDIRECT_LOCATION": location} if location is not None else None
        stream.answer(status, message, variables, None, hsts)


def start(
    session: HttpSession,
    target: ClusterRuntime,
    edits: Edits | None,
    body_limit: int | None,
    policy: AuthPolicy,
) -> None:
    """The session's request waits for `policy`'s verdict before going to `target`."""
    session._release_back()  # an idle kept-alive backend connection must not wait with us
    session.phase = AUTH
    auth_cluster = session.listener.proxy.clusters.get(policy.cluster_id)
    request = session.request
    assert request is not None
    waiter = SessionWait(session, target, body_limit)
    exchange = session.auth = AuthExchange(
        waiter, request, policy, auth_cluster or target, target, edits, body_limit
    )
    loop, listener, cluster = session.loop, session.listener, auth_cluster or target
    wait = (cluster.connect_timeout or listener.connect_timeout) + (
        cluster.back_timeout or listener.back_timeout
    )
    loop.timers.arm(session, loop.now + wait + 1.0)  # a backstop: the exchange times out first
    if auth_cluster is None:
        exchange._verdict(500, f"auth cluster {policy.cluster_id} does not exist")
        return
    exchange.connect()


def wait_on_stream(
    stream: H2Stream,
    target: ClusterRuntime,
    edits: Edits | None,
    body_limit: int | None,
    policy: AuthPolicy,
) -> StreamWait:
    """The stream's request waits for `policy`'s verdict before going to `target`: the
    returned `StreamWait` is the stream's exchange meanwhile."""
    request = stream.request
    assert request is not None
    wait = StreamWait(stream, target, body_limit)
    auth_cluster = stream.session.listener.proxy.clusters.get(policy.cluster_id)
    exchange = wait.auth = AuthExchange(
        wait, request, policy, auth_cluster or target, target, edits, body_limit
    )
    stream.exchange = wait
    if auth_cluster is None:
        exchange._verdict(500, f"auth cluster {policy.cluster_id} does not exist")
    else:
        exchange.connect()
    return wait


def _answer_kept_alive(session: HttpSession, status: int, location: str | None, hsts: str) -> None:
    """A short 302/401/403 after which the connection serves the next request."""
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
    if location is not None:
        lines.append(b"Location: " + location.encode("latin-1"))
    if hsts:
        lines.append(f"{HSTS_HEADER}: {hsts}".encode("latin-1"))
    body = b"%d %s\n" % (status, _REASONS[status])
    lines += (b"Content-Type: text/plain", b"Content-Length: %d" % len(body))
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    session.loop.metrics.answer(status)
    session.backend_id = None
    session.response_started = session.loop.now
    session.response = ResponseHead(status, lines[0], b"", True)
    session.response_body = None
    session.request_done = session.response_done = True
    session.phase = EXCHANGE  # ends as an exchange does: `_finish_exchange`, kept alive
    session.response_edits = ()
    if session._send_to_front([data], len(data)):
        session._finish_exchange()
