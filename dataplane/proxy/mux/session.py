"""One client connection on an HTTP listener: an explicit state machine, no coroutine.

Phases: HEAD (waiting for a request head; idle keep-alive when nothing is buffered), CONNECTING
(a new backend connection is being opened), EXCHANGE (request forwarded, request body and
response streamed), PIPE (after a 101: bytes both ways), ANSWER (a default answer is written,
then the connection lingers briefly and closes), H2 (the request is a stream on a shared h2c
backend connection: mux/h1_stream.py). See LIFECYCLE.md.

The state lives here, with what ends a connection (answers, timeouts, close); the client side
(`session_request`), the backend side (`session_backend`) and the flow control
(`session_flow`) are mixins over the same slots.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from dataplane.proxy.mux import error_pages
from dataplane.proxy.mux.h2_session import H2Session
from dataplane.proxy.mux.session_fields import (
    ANSWER,
    CLOSED,
    CONNECTING,
    EPOLLIN,
    EXCHANGE,
    H2,
    HEAD,
    INFINITY,
    LINGER_SECONDS,
    NO_BUFFER,
    NO_FAILURES,
    NO_VIEW,
    NOT_FILED,
    PIPE,
    SOON,
    STOP_GRACE_SECONDS,
    ClientStream,
)
from dataplane.proxy.mux.session_request import RequestSide
from dataplane.proxy.routing.cors import edited_cors, with_cors
from dataplane.proxy.routing.policy import edited_hsts, with_hsts

if TYPE_CHECKING:
    from dataplane.proxy.listener import HttpListener
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.proxy_protocol.header import Peer
    from dataplane.proxy.routing.conn_limit import ConnLimiter
    from dataplane.proxy.routing.error_pages import ErrorPages


class HttpSession(RequestSide):
    __slots__ = ()

    def __init__(self, loop: Host, listener: HttpListener, sock: ClientStream, peer: Peer) -> None:
        self.loop = loop
        self.listener = listener
        self.sock = sock
        self.fd = sock.fileno()
        self.context = listener.connection_context(peer)
        self.peer_key = (peer[0], "")
        self.figures = None  # set by the acceptor
        self.buffer, self.view = NO_BUFFER, NO_VIEW  # lent by the pool while bytes are held
        self.start = self.end = 0
        self.starved = 0
        self.phase = HEAD
        self.mask = EPOLLIN
        self.nodelay = listener.scheme != "http"  # HTTPS sockets get it at accept
        self.auth = None
        self.conn_limiter = None
        self.error_pages = None
        self.conn_ip = ""
        self.back = None
        self.h2 = None
        self.back_timeout = listener.back_timeout
        self.cluster = None  # counted against its per-IP limit
        self.routed = None  # the current request's cluster
        self.request = None
        self.response = None
        self.request_body = None
        self.response_body = None
        self.request_done = self.response_done = self.closing = False
        self.head_started = self.front_full = False
        self.head_scan = None
        self.body_mark, self.body_until = 0, INFINITY
        self.request_id = b""
        self.backend_id = None
        self.request_started = self.response_started = loop.now
        self.bytes_in = self.bytes_out = 0
        self.set_cookie = b""
        self.response_edits = ()
        self.sticky_id = None
        self.replay = None
        self.to_front = None
        self.to_back = None
        self.failed = NO_FAILURES
        self.host_raw = b""
        self.host = ""
        # The listener's latest head: a new connection that sends the same one (clients of a
        # kind repeat each other) finds and parses it without a search (http1/head.find_head)
        self.last_head = listener.recent_head
        self.log_parts = None
        self.last_request = listener.recent_request
        self.template = None  # the forwarded head, split at the request id
        self.template_sticky = b""
        self.deadline = 0.0
        self.sni_binding = None  # HttpsSession sets its own
        loop.register(self.fd, self, EPOLLIN)  # SessionFields.__call__: on_front
        self.deadline = loop.now + listener.front_timeout
        self.timer_slot = SOON  # filed at the next tick if still open (Loop.file_soon)
        loop.file_soon(self)

    def _fail(self, status: int, message: str) -> None:
        """Answer `status` if the client has not seen a response head yet, else close (or
        serve it from the route's error cluster: mux/error_pages.py)."""
        if self.response is None and self.phase != PIPE:
            pages = self.error_pages
            if (
                pages is not None
                and status in pages.codes
                and status != 408
                and error_pages.intercept(self, pages, status)
            ):
                return
            self._answer(status, message)
        else:
            self.close()

    def _answer(
        self,
        status: int,
        message: str = "",
        retry_after: int | None = None,
        variables: dict[str, str] | None = None,
        name: str | None = None,
        hsts: str | None = None,
        cors: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        """Send a default answer (or the template `name`), then close. `hsts`: the matched
        route's Strict-Transport-Security value ("": none), `cors` its CORS headers; when not
        given, those in the current request's edits (a failure after forwarding)."""
        self._drop_back()
        self.loop.metrics.answer(status)
        cluster_id = self.routed.cluster_id if self.routed is not None else None
        values = {
            "REQUEST_ID": self.request_id.decode("ascii"),
            "CLUSTER_ID": cluster_id or "",
            "MESSAGE": message,
            "RETRY_AFTER": str(retry_after) if retry_after else "",
            **(variables or {}),
        }
        answers = self.listener.answers
        if name is None:
            data = answers.render(status, cluster_id, values)
        else:
            data = answers.render_template(name, cluster_id, values)
        if hsts is None and self.routed is not None:
            hsts = edited_hsts(self.response_edits)
        data = with_hsts(data, status, hsts)
        if cors is None and self.routed is not None:
            cors = edited_cors(self.response_edits)
        if cors:
            data = with_cors(data, status, cors)
        self.phase = ANSWER
        self.to_back = None
        self.start = self.end = 0
        self.front_full = False
        self._set_deadline(self.loop.now + self.listener.front_timeout)
        sent = self._send_to_front([data], len(data))
        self._record(status, False, message)  # after the send: it counts the bytes out
        if sent:
            self._linger()

    def _linger(self) -> None:
        """Half-close and drain briefly, so unread client bytes cannot turn our answer into
        a reset before the client has read it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._set_deadline(self.loop.now + LINGER_SECONDS)

    def _close_gently(self) -> None:
        """End a connection between requests as an answer ends: half-close and linger, so a
        request racing this close meets a FIN (the client retries it), never a reset."""
        self._drop_back()
        self.phase = ANSWER
        self.start = self.end = 0
        self.front_full = False
        self._sync_masks()
        self._linger()

    def _record(
        self, status: int, reached_backend: bool = True, message: str | None = None
    ) -> None:
        """One finished (or abandoned) request, kept for the worker's metrics and access log,
        which take them in batches (request_ends). `message` set: the proxy answered or gave
        up; logged at the error level. The request's connection-limit count is given back
        (an upgraded connection's, 101, when it closes)."""
        limiter = self.conn_limiter
        if limiter is not None and status != 101:
            self.conn_limiter = None
            limiter.release(self.conn_ip)
        loop = self.loop
        ended = loop.ended
        if ended is None:  # neither metrics nor access logs
            return
        backend_id = response_at = None
        if reached_backend:
            backend_id = self.backend_id
            if self.response is not None or self.phase == PIPE:  # the head came (101: PIPE)
                response_at = self.response_started
        access_log = loop.access_log if message is None else loop.error_access_log
        ended.append(
            (
                loop.now,
                self.request_started,
                response_at,
                status,
                message,
                self.routed,
                backend_id,
                self.bytes_in,
                self.bytes_out,
                self.request_id,
                None if access_log is None else access_log.fixed_parts(self, backend_id),
            )
        )

    def on_timeout(self, now: float) -> None:
        phase = self.phase
        if phase == HEAD and self.head_started:
            self.loop.counters.timeouts += 1
            self._answer(408, "request timeout")
        elif phase == CONNECTING:
            self._connect_failed()
        elif phase in (EXCHANGE, H2) and self.response is None:
            self.loop.counters.timeouts += 1
            if not self.request_done:  # the client stalled its upload
                self.loop.counters.body_timeouts += 1
            self._fail(504 if self.request_done else 408, "timeout")
        elif phase == HEAD and self.loop.stopping:
            self._close_gently()  # the soft stop's grace is over
        elif phase != CLOSED:
            self.close()

    def soft_stop(self) -> None:
        """Worker shutdown. From now on every response says `Connection: close` and the
        connection half-closes after it (`loop.stopping`). An idle connection may have a
        request on its way: it gets STOP_GRACE_SECONDS to send it, then closes gently."""
        if self.phase == HEAD and not self.head_started:
            grace = self.loop.now + STOP_GRACE_SECONDS
            if grace < self.deadline:
                self.loop.timers.arm(self, grace)
        elif self.phase == PIPE:
            self.closing = True

    def _drop_back(self) -> None:
        h2 = self.h2
        if h2 is not None:  # phase H2: its stream is reset
            self.h2 = None
            h2.cancel()
        back = self.back
        if back is not None:
            if self.phase == EXCHANGE and not self.response_done:
                back.backend.active_requests -= 1  # the exchange ends here, unfinished
            self.back = None
            # Bytes still queued for the client may be views into its buffer.
            back.close(reuse_buffer=self.to_front is None)

    def _release_back(self) -> None:
        """Return a clean backend connection to the pool (between requests only)."""
        back = self.back
        if back is not None:
            self.back = None
            if back.connected and back.start == back.end and self.to_back is None:
                self.loop.pool.give_back(back)
            else:
                back.close(reuse_buffer=self.to_front is None)

    def hold_connection(self, limiter: ConnLimiter, ip: str) -> None:
        """Keep the routed request's connection-limit count (request_route.Holder)."""
        held = self.conn_limiter
        if held is not None:  # (never expected: the previous request ended first)
            held.release(self.conn_ip)
        self.conn_limiter, self.conn_ip = limiter, ip

    def serve_errors(self, pages: ErrorPages) -> None:
        """The routed request's custom_errors (request_route.Holder; mux/error_pages.py)."""
        self.error_pages = pages

    def _become_h2(self, received: bytes) -> None:
        """An `h2c` listener's client opened with HTTP/2's preface: the connection goes on as
        an H2Session, with the bytes read so far (nothing was forwarded yet)."""
        loop = self.loop
        self.phase = CLOSED
        loop.unregister(self.fd)
        loop.timers.cancel(self)
        if self.buffer is not NO_BUFFER:
            loop.buffers.give_client(self.buffer, self.view, True)
            self.buffer, self.view = NO_BUFFER, NO_VIEW
        loop.buffers.holders.discard(self)
        self._release_back()
        loop.sessions.discard(self)
        session = H2Session(loop, self.listener, self.sock, None, context=self.context)
        session.figures = self.figures
        loop.sessions.add(session)
        session.start(received)

    def close(self) -> None:
        if self.phase == CLOSED:
            return
        between_requests = self.phase == HEAD
        if self.phase in (CONNECTING, EXCHANGE, H2):  # an exchange cut short
            status = self.response.status if self.response is not None else 0
            cut = None if self.response_done else "closed before the response was complete"
            self._record(status, message=cut)
        self.phase = CLOSED
        loop = self.loop
        loop.forget(self.fd)  # the close below takes it out of the epoll set
        if self.timer_slot == SOON:
            self.timer_slot = NOT_FILED  # never filed: the loop drops it at the next tick
        else:
            loop.timers.cancel(self)
        self.sock.close()
        if self.buffer is not NO_BUFFER:
            reuse = self.to_front is None and self.to_back is None  # no pending view into it
            loop.buffers.give_client(self.buffer, self.view, reuse)
            self.buffer, self.view = NO_BUFFER, NO_VIEW
        if between_requests:
            self._release_back()
        else:
            self._drop_back()
        loop.buffers.holders.discard(self)
        if self.cluster is not None:
            key = self.peer_key
            self.listener.peers.release(key[0], key[1])
            self.cluster = None
        limiter = self.conn_limiter
        if limiter is not None:  # a request cut short, whatever the phase
            self.conn_limiter = None
            limiter.release(self.conn_ip)
        if self.auth is not None:  # a client gone while its request waited: cancel the ask
            self.auth.cancel()
            self.auth = None
        loop.session_closed(self)
