"""External authorisation, the I/O: the sub-request an HTTP/1.1 request waits for (AUTH).

`start` is called by the session once a request is routed to a route with an `auth_request`
(routing/auth_request.py): the session stops reading its client (bytes already read stay
buffered, bounded by the client buffer) and an `AuthExchange` asks a backend of the auth
cluster, on a connection from the worker's pool (or a new one: the same connect, retry and
health bookkeeping as the session's own, mux/backend_choice.py). The answer's head is read
into a bounded buffer (MAX_ANSWER bytes, its body too when it came with it, so the connection
goes back to the pool); it gives the verdict:

- 2xx: the request is forwarded (`_forward`), with the copied headers as request edits;
- 401/403: answered as such (a 401 as a 302 to the signin URL when there is one), keeping the
  connection alive when the request had no body (a body would have to be read and dropped);
- anything else, a connection failure, no backend, a missing cluster, an answer larger than
  MAX_ANSWER, or the cluster's connect/back timeout passing: 500.

A client that goes away closes its session, which cancels the exchange (`cancel`).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

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
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.head import RequestHead
    from dataplane.proxy.mux.backend_pool import BackendConnection
    from dataplane.proxy.mux.session import HttpSession
    from dataplane.proxy.routing.auth_request import AuthPolicy

MAX_ANSWER = 32768  # bytes of the auth answer kept (head, and body when it comes with it)
_PARSER = ResponseParser()
_REASONS = {302: b"Found", 401: b"Unauthorized", 403: b"Forbidden"}


class AuthExchange:
    """One sub-request to the auth cluster, for one waiting session."""

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
        session: HttpSession,
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
        request = session.request
        assert request is not None
        self.request: RequestHead = request
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
        session = self._finish()
        if session is None:
            return
        edits = self.edits
        if edits is None:
            edits = Edits.__new__(Edits)
            edits.host = edits.path = None
            edits.request_headers, edits.response_headers = (), ()
        edits.request_headers += copied
        session.front_full = False  # reading resumes as the exchange needs it
        session._forward(self.request, self.target, edits, self.body_limit)
        if session.phase not in (CLOSED, AUTH):
            session._sync_masks()

    def _verdict(self, status: int, message: str) -> None:
        session = self._finish()
        if session is None:
            return
        hsts = self.policy.hsts
        if status == 500:
            session._answer(500, message, hsts=hsts)
            return
        location = None
        if status == 401:
            location = self.policy.signin_location(self.request, session.listener.scheme)
            if location is not None:
                status = 302
        request = self.request
        if request.content_length or request.chunked:
            # The body would have to be read and dropped: answer and close instead.
            variables = {"REDIRECT_LOCATION": location} if location is not None else None
            session._answer(status, message, variables=variables, hsts=hsts)
            return
        _answer_kept_alive(session, status, location, hsts)

    def _finish(self) -> HttpSession | None:
        """The exchange ends: the session, if it still waits for it."""
        session = self.session
        session.loop.timers.cancel(self)
        self._drop()
        if session.auth is not self or session.phase != AUTH:
            return None
        session.auth = None
        return session


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
    exchange = session.auth = AuthExchange(
        session, policy, auth_cluster or target, target, edits, body_limit
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
