"""An HTTP/1.1 client's request carried as a stream on a shared h2c backend connection (h1 -> h2).

A request of an `HttpSession` that routes to a cluster with `http2 = true` opens no HTTP/1.1
backend connection: `start_h2` puts the session in phase H2 and hands the request to an
`H2Exchange` (mux/h2_backends.py: backend choice, retries, circuit breaker, GOAWAY, resets,
back_timeout), whose stream is an `H1Stream` here. Translation (http2/translate.py, sozu's
converter rules):

- request: the forwarded head (forwarding headers, request id, edits in) becomes HTTP/2 fields,
  Host `:authority`, connection-specific fields dropped, Content-Length kept; a chunked body
  crosses de-chunked as DATA (its trailers as HTTP/2 trailers); `te: trailers` only when the
  client sent that token.
- response: a status line and the fields, the request id header, the sticky cookie and the
  route's response edits; framing by Content-Length when the backend gave one, else chunked
  (HTTP/1.0 clients: until close), nothing for HEAD/204/304; trailers become the chunked
  trailer section when the client said `TE: trailers`, else they are dropped; 1xx heads cross
  (not to HTTP/1.0 clients). Keep-alive and `Connection: close` as for HTTP/1.1 backends.

Flow control both ways, bounded: request body bytes are copied out of the client's buffer
into the exchange, and the client is not read while the exchange holds some the backend's
window cannot take yet (`front_full`, until `body_forwarded`); response bytes the client socket
cannot take wait in the session's `to_front` and are credited back to the backend only once
written (`drained`), so each direction holds at most one stream window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.body import ChunkedBody, LengthBody, Span
from dataplane.proxy.http1.head import HEAD_END
from dataplane.proxy.http1.head import ResponseHead as H1Response
from dataplane.proxy.http2.translate import (
    asks_trailers,
    forwarded_to_h2,
    h2_informational_to_h1,
    last_chunk,
    status_line,
)
from dataplane.proxy.mux import error_pages
from dataplane.proxy.mux.h2_backends import H2Exchange
from dataplane.proxy.mux.session_fields import (
    BODY_PAUSED,
    H2,
    HEAD,
    NO_FAILURES,
    STOP_GRACE_SECONDS,
)
from dataplane.proxy.routing.policy import set_headers

if TYPE_CHECKING:
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.head import RequestHead
    from dataplane.proxy.http2.events import Fields
    from dataplane.proxy.mux.h2_stream import HasBackend
    from dataplane.proxy.mux.session_fields import SessionFields

INFINITY = float("inf")
_LAST_CHUNK = b"0\r\n\r\n"
_CLOSE = b"\r\nconnection: close"
_KEEP_ALIVE = b"\r\nconnection: keep-alive"
_CHUNKED = b"\r\ntransfer-encoding: chunked"
_NO_LENGTH = b"\r\ncontent-length: 0"


def start_h2(
    session: SessionFields,
    request: RequestHead,
    cluster: ClusterRuntime,
    head: bytes,
    body_limit: int | None,
) -> None:
    """Send `request` (its forwarded `head`) to `cluster`'s h2c backends: phase H2."""
    session._release_back()  # a kept HTTP/1.1 connection (the cluster turned http2)
    if request.chunked:
        body: ChunkedBody | LengthBody | None = (
            ChunkedBody() if body_limit is None else ChunkedBody(body_limit)
        )
    elif request.content_length:
        body = LengthBody(request.content_length)
    else:
        body = None
    loop = session.loop
    session.request_body = body
    session.request_done = body is None
    session.response = session.response_body = None
    session.response_done = False
    session.replay = None
    if session.failed:
        session.failed = NO_FAILURES
    window = session.listener.body_window
    if body is None or not window:
        session.body_until = INFINITY
    else:
        session.body_until = loop.now + window
        session.body_mark = session.bytes_in
    session.phase = H2
    stream = H1Stream(session, request)
    h2_request = forwarded_to_h2(head, stream.trailers_ok)
    exchange = stream.exchange = H2Exchange(stream, cluster, h2_request, session.sticky_id)
    session.h2 = stream
    loop.timers.arm(session, loop.now + session.back_timeout)
    exchange.start()
    if session.phase == H2 and body is not None:
        stream.feed()


class H1Stream:
    """The HTTP/1.1 client side of one h2c stream (see the module docstring)."""

    __slots__ = (
        "backend",
        "chunked",
        "client_done",
        "exchange",
        "head_only",
        "http10",
        "loop",
        "method",
        "session",
        "set_cookie",
        "status",
        "trailers_ok",
    )

    def __init__(self, session: SessionFields, request: RequestHead) -> None:
        self.session = session
        self.loop = session.loop
        self.client_done = session.request_done
        self.exchange: H2Exchange | None = None
        self.backend: Backend | None = None  # for the access log
        self.set_cookie = b""
        self.method = request.method
        self.http10 = request.http10
        self.trailers_ok = asks_trailers(request)
        self.chunked = False
        self.head_only = False  # a response without a body (HEAD, 204, 304)
        self.status = 0

    # -- the request (the session calls) ---------------------------------------------------

    def hash_inputs(self) -> tuple[RequestHead | None, Callable[[], str]]:
        """What a cluster's hash_key reads (mux/h2_backends.py): the session's request."""
        return self.session.request, self.session._client_ip

    def feed(self) -> None:
        """Request body bytes in the client's buffer: de-framed, copied to the exchange."""
        session = self.session
        exchange = self.exchange
        body = session.request_body
        if exchange is None or body is None or session.request_done:
            return
        buffer, view, start, end = session.buffer, session.view, session.start, session.end
        try:
            if type(body) is ChunkedBody:
                spans: list[Span] = []
                taken = body.decode(buffer, start, end, spans)
                payload = b"".join([view[a:b] for a, b in spans])
            else:
                taken = body.feed(buffer, start, end)
                payload = bytes(view[start : start + taken])
        except HttpSyntaxError as error:
            session._fail(error.status, error.reason)  # 400, or 413 past the body's limit
            return
        session.start = start + taken
        session.bytes_in += taken
        done = body.done
        if done:
            session.request_done = self.client_done = True
        trailers = body.trailers if done and type(body) is ChunkedBody else None
        if trailers:
            if payload:
                exchange.send_body(payload, False)
            exchange.send_trailers(trailers)
        elif payload or done:
            exchange.send_body(payload, done)
        if session.phase != H2:
            return
        if exchange.body and not done:  # the backend's window is full: stop reading
            session.front_full = True
            session.body_mark = BODY_PAUSED  # this window is not held against the client
            session._sync_masks()
        if session.start == session.end:
            session.start = session.end = 0

    def drained(self) -> None:
        """The client socket took every byte queued for it."""
        if self.session.response_done:
            self._finish()
        elif self.exchange is not None:
            self.exchange.resume()  # the backend may send that much more

    def cancel(self) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.cancel()

    # -- the exchange calls ----------------------------------------------------------------

    def chose(self, conn: HasBackend, set_cookie: bytes) -> None:
        backend = self.backend = conn.backend
        self.session.backend_id = backend.backend_id
        self.set_cookie = set_cookie

    def failed(self, status: int, message: str) -> None:
        self.session._fail(status, message)  # an answer if no head went out yet, else close

    def body_forwarded(self, size: int) -> None:
        """The exchange sent request body bytes: read the client again once it holds none."""
        session = self.session
        exchange = self.exchange
        if session.front_full and exchange is not None and not exchange.body:
            session.front_full = False
            session._sync_masks()
            if session.start < session.end:
                self.feed()

    def informational(self, status: int, fields: Fields) -> None:
        if self.http10:
            return  # HTTP/1.0 has no 1xx
        session = self.session
        session.deadline = self.loop.now + session.back_timeout
        session._no_delay()  # the final answer follows in another write
        self._send([h2_informational_to_h1(status, fields)])

    def respond(self, status: int, fields: Fields, end_stream: bool) -> None:
        """The backend's final response head, written as an HTTP/1.1 one."""
        session = self.session
        pages = session.error_pages
        if (
            pages is not None
            and status in pages.codes
            and error_pages.intercept(session, pages, status)
        ):
            return  # served by the error cluster instead (mux/error_pages.py)
        loop = self.loop
        request = session.request
        assert request is not None
        self.status = status
        head_only = self.head_only = self.method == b"HEAD" or status in (204, 304)
        lines = [status_line(status)]
        has_length = False
        for name, value in fields:
            if name == b"content-length":
                has_length = True
            lines.append(b"\r\n" + name + b": " + value)
        until_close = False
        if not head_only and not has_length:
            if end_stream:
                lines.append(_NO_LENGTH)
            elif self.http10:
                until_close = True
            else:
                lines.append(_CHUNKED)
                self.chunked = True
        closing = session.closing = (
            session.closing
            or (loop.stopping and session.buffer.find(HEAD_END, session.start, session.end) < 0)
            or not (request.keep_alive and session.request_done and not until_close)
        )
        if closing:
            lines.append(_CLOSE)
        elif self.http10:
            lines.append(_KEEP_ALIVE)
        lines += (session.context.id_header, session.request_id)
        if self.set_cookie:
            lines += (b"\r\nset-cookie: ", self.set_cookie)
        lines.append(HEAD_END)
        out = b"".join(lines)
        if session.response_edits:
            out = set_headers(out, session.response_edits)
        session.response = H1Response(status, lines[0], b"", not closing)
        session.response_started = loop.now
        session.deadline = loop.now + session.back_timeout
        session.response_done = end_stream
        if not end_stream and not session.nodelay:
            session._no_delay()  # the body's last bytes must not wait for an ACK
        if self._send([out]) and end_stream:
            self._finish()

    def data(self, payload: bytes, end: bool) -> bool:
        """Response body bytes; False when they wait for the client (credited later)."""
        session = self.session
        if session.phase != H2 or session.response is None:
            return False
        session.deadline = self.loop.now + session.back_timeout
        parts: list[bytes | memoryview] = []
        if payload and not self.head_only:
            if self.chunked:
                parts += (b"%x\r\n" % len(payload), payload, b"\r\n")
            else:
                parts.append(payload)
        if end:
            if self.chunked:
                parts.append(_LAST_CHUNK)
            session.response_done = True
        sent = self._send(parts)
        if sent and end:
            self._finish()
        return sent

    def trailers(self, fields: Fields) -> None:
        """The response's trailers: the chunked trailer section if the client asked for
        them (`TE: trailers`), else dropped (a Content-Length body cannot carry any)."""
        session = self.session
        if session.phase != H2 or session.response is None:
            return
        parts: list[bytes | memoryview] = []
        if self.chunked:
            parts.append(last_chunk(fields) if self.trailers_ok else _LAST_CHUNK)
        session.response_done = True
        if self._send(parts):
            self._finish()

    # -- writing and ending ----------------------------------------------------------------

    def _send(self, parts: list[bytes | memoryview]) -> bool:
        """Write to the client after what already waits; False when some had to wait."""
        session = self.session
        if not parts:
            return session.to_front is None
        queued = session.to_front
        if queued is not None:
            queued += parts
            return False
        return session._send_to_front(parts, sum(map(len, parts))) and session.phase == H2

    def _finish(self) -> None:
        """The whole response has been handed to the client socket (as _finish_exchange)."""
        session = self.session
        if session.phase != H2:
            return
        loop = self.loop
        session._record(self.status)  # with this stream's backend (the access log reads it)
        session.h2 = None
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            if exchange.ended_sent:
                exchange.done()
            else:
                exchange.cancel()  # the response ended first: stop the request's stream
        session.phase = HEAD
        if session.closing or not session.request_done:
            if loop.stopping:
                session._close_gently()
            else:
                session.close()
            return
        if not session.nodelay:
            session._no_delay()  # kept alive: the next response must not wait behind this one
        session.request = session.response = None
        session.request_body = session.response_body = None
        session.head_started = False
        session.deadline = loop.now + session.listener.front_timeout
        if loop.stopping:
            loop.timers.arm(session, loop.now + STOP_GRACE_SECONDS)
        if session.front_full:
            session.front_full = False
            session._sync_masks()
        if session.start < session.end:
            session._on_head_bytes()
        else:
            session.start = session.end = 0
