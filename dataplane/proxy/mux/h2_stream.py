"""One request of an HTTP/2 client connection, from its head to the end of its response.

A stream reads as an HTTP/1.1 request: its head is written as one (`translate`) and parsed by
the listener's own parser, so Host rules, routing, access rules, policy, forwarding headers
and header edits are exactly those of HTTP/1.1 (`request_route`). It is then carried by an
exchange with a backend (`H1Exchange`: an HTTP/1.1 backend connection, pooled) which calls
back here with the response; what the proxy answers itself (404, 503, redirects...) is the
listener's default answer, sent as an HTTP/2 response.

Flow control both ways: request body bytes are credited back to the client (`consumed`) only
once written to the backend; response body bytes the client's window cannot take yet wait
here (`pending`), and the exchange stops reading its backend until `writable` drains them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from h2.errors import ErrorCodes

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.forwarding import forward_request, sticky_cookie
from dataplane.proxy.http1.head import HEAD_END
from dataplane.proxy.http2 import RequestHead
from dataplane.proxy.http2.translate import forwarded_to_h2, h1_response_to_h2, h2_request_to_h1
from dataplane.proxy.mux.auth_request import StreamWait, wait_on_stream
from dataplane.proxy.mux.error_pages import intercept_stream
from dataplane.proxy.mux.h1_exchange import H1Exchange
from dataplane.proxy.mux.h2_backends import H2Exchange
from dataplane.proxy.mux.request_route import Guarded, Refusal, route_request
from dataplane.proxy.routing.access import client_address, too_large
from dataplane.proxy.routing.cors import edited_cors, with_cors
from dataplane.proxy.routing.policy import Edits as RequestEdits
from dataplane.proxy.routing.policy import edited_hsts, rewrite_request_head, with_hsts
from dataplane.proxy.routing.route import IfAbsent

if TYPE_CHECKING:
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.head import RequestHead as H1Request
    from dataplane.proxy.http2.events import Fields
    from dataplane.proxy.mux.h2_session import H2Session
    from dataplane.proxy.routing.conn_limit import ConnLimiter
    from dataplane.proxy.routing.error_pages import ErrorPages

Edits = tuple[tuple[str, str], ...]
Exchange = H1Exchange | H2Exchange | StreamWait  # StreamWait: waiting for auth_request


class HasBackend(Protocol):
    """A backend connection, as the access log sees it."""

    @property
    def backend(self) -> Backend: ...


class H2Stream:
    __slots__ = (
        "back",
        "backend_id",
        "body_limit",
        "body_received",
        "bytes_in",
        "bytes_out",
        "client_done",
        "conn_ip",
        "conn_limiter",
        "context",
        "error_pages",
        "exchange",
        "finished",
        "head",
        "host",
        "log_parts",
        "loop",
        "pending",
        "pending_end",
        "pending_trailers",
        "request",
        "request_id",
        "responded",
        "response_edits",
        "response_started",
        "routed",
        "session",
        "set_cookie",
        "started",
        "status",
        "stream_id",
    )

    h2 = None  # read by the access log as on an HttpSession (whose phase H2 sets it)

    def __init__(self, session: H2Session, head: RequestHead) -> None:
        loop = session.loop
        self.session = session
        self.loop = loop
        self.head = head
        self.stream_id = head.stream_id
        self.context = session.context
        self.request: H1Request | None = None
        self.routed: ClusterRuntime | None = None
        self.back: HasBackend | None = None  # for the access log: its backend
        self.backend_id: str | None = None
        self.log_parts: object = None
        self.host = ""
        self.request_id = loop.request_ids.next()
        self.started = loop.now
        self.response_started: float | None = None
        self.bytes_in = self.bytes_out = 0
        self.exchange: Exchange | None = None
        self.client_done = head.end_stream
        self.body_limit: int | None = None
        self.body_received = 0  # request body bytes (against body_limit)
        self.responded = False  # a final response head was sent
        self.finished = False
        self.status = 0
        # response body the client's window cannot take yet (views: of immutable bytes)
        self.pending: list[bytes | memoryview] = []
        self.pending_end = False
        self.pending_trailers: Fields | None = None
        self.response_edits: Edits = ()
        self.set_cookie = b""
        self.conn_limiter: ConnLimiter | None = None  # this stream's connection-limit count
        self.conn_ip = ""
        self.error_pages: ErrorPages | None = None  # the route's custom_errors

    # -- the request ---------------------------------------------------------------------

    def start(self) -> None:
        session = self.session
        listener = session.listener
        try:
            h1_head, _ = h2_request_to_h1(self.head)
            request = listener.parse(h1_head)
        except HttpSyntaxError as error:
            self.answer(error.status, error.reason)
            return
        self.request = request
        self.bytes_in = len(h1_head)
        host = listener.normalize_host(request.host)
        if host is None:
            self.answer(400, "invalid Host")
            return
        binding = session.sni_binding
        if binding is not None and not binding.allows(host):
            self.answer(421, f"{host} is not covered by this connection's certificate")
            return
        self.host = host
        decision = route_request(
            listener, request, host, self._client_ip, self.loop.now, self, binding
        )
        if isinstance(decision, Refusal):
            self.routed = decision.cluster
            self.answer(
                decision.status,
                decision.message,
                decision.variables,
                decision.template,
                decision.hsts,
                decision.cors,
            )
            return
        if isinstance(decision, Guarded):  # asked first; forwarded once allowed
            self.routed, self.body_limit = decision.cluster, decision.body_limit
            wait_on_stream(
                self, decision.cluster, decision.edits, decision.body_limit, decision.auth
            )
            return
        cluster, edits, self.body_limit = decision
        self.routed = cluster
        self.forward(cluster, edits)

    def forward(self, cluster: ClusterRuntime, edits: RequestEdits | None) -> None:
        """Send the request to `cluster` (an exchange with one of its backends)."""
        session, listener = self.session, self.session.listener
        request = self.request
        assert request is not None
        retry_after = session.bind_cluster(cluster)
        if retry_after is not None:
            retry = {"RETRY_AFTER": str(retry_after)} if retry_after else None
            self.answer(429, "too many connections from this address", retry)
            return
        sticky_name = b""
        sticky_id = None
        if cluster.sticky_session:
            sticky_name = cluster.sticky_name or listener.sticky_name
            sticky_id = sticky_cookie(request, sticky_name) if request.cookies else None
        forwarded = forward_request(request, self.context, self.request_id, sticky_name)
        if edits is not None:
            forwarded = rewrite_request_head(forwarded, request, edits)
            self.response_edits = edits.response_headers
        exchange: Exchange
        if cluster.http2:
            asks = (b"te", b"trailers") in self.head.headers  # gRPC needs it
            exchange = H2Exchange(self, cluster, forwarded_to_h2(forwarded, asks), sticky_id)
        else:
            # the translated head says `transfer-encoding: chunked` exactly when the body goes so
            exchange = H1Exchange(self, cluster, forwarded, request.chunked, sticky_id)
        self.exchange = exchange
        exchange.start()

    def hash_inputs(self) -> tuple[H1Request | None, Callable[[], str]]:
        """What a cluster's hash_key reads (mux/h2_backends.py)."""
        return self.request, self._client_ip

    def _client_ip(self) -> str:
        context = self.context
        ip = context.peer_ip.decode("ascii")
        if context.trusted and self.request is not None:
            trusted = self.session.listener.trusted_proxies
            ip = client_address(ip, self.request.x_forwarded_for, trusted)
        return ip

    def client_body(self, data: bytes, end: bool) -> None:
        """Request body bytes from the client (credited back once forwarded)."""
        self.bytes_in += len(data)
        self.body_received += len(data)
        if end:
            self.client_done = True
        limit = self.body_limit
        if limit is not None and self.body_received > limit:
            self.session.front.consumed(self.stream_id, len(data))
            self._fail(413, too_large(limit))
            return
        exchange = self.exchange
        if exchange is None:  # answered already: nothing will read it
            self.session.front.consumed(self.stream_id, len(data))
            return
        exchange.send_body(data, end)

    def client_trailers(self, fields: Fields) -> None:
        self.client_done = True
        if self.exchange is not None:
            self.exchange.send_trailers(fields)

    def body_forwarded(self, size: int) -> None:
        """The exchange wrote `size` request body bytes to the backend: the client may send
        that much more (a WINDOW_UPDATE, written with this turn's other frames)."""
        self.session.front.consumed(self.stream_id, size)
        self.session.flush_soon()

    # -- the response (called by the exchange) ------------------------------------------

    def chose(self, conn: HasBackend, set_cookie: bytes) -> None:
        """The backend connection carrying this stream (HTTP/1.1 or HTTP/2)."""
        self.back = conn
        self.backend_id = conn.backend.backend_id
        self.set_cookie = set_cookie

    def respond(self, status: int, fields: Fields, end_stream: bool) -> None:
        """The backend's final response head (HTTP/2 fields, hop-by-hop ones removed)."""
        pages = self.error_pages
        if pages is not None and status in pages.codes and intercept_stream(self, pages, status):
            return  # served by the error cluster instead (mux/error_pages.py)
        fields.append((self.context.id_name, self.request_id))
        if self.set_cookie:
            fields.append((b"set-cookie", self.set_cookie))
        if self.response_edits:
            fields = edit_fields(fields, self.response_edits)
        self.responded = True
        self.status = status
        self.response_started = self.loop.now
        self.session.front.send_response(self.stream_id, status, fields, end_stream)
        if end_stream:
            self._finish()
        self.session.flush_soon()

    def informational(self, status: int, fields: Fields) -> None:
        self.session.front.send_response(self.stream_id, status, fields)
        self.session.flush_soon()

    def data(self, payload: bytes | memoryview, end: bool) -> bool:
        """Response body bytes (a view: of immutable bytes); False when the client's window
        is full (stop reading)."""
        if self.finished:
            return False
        if self.pending:
            self.pending.append(payload)
            self.pending_end = end
            return False
        front = self.session.front
        taken = front.send_body(self.stream_id, payload, end)
        self.bytes_out += taken
        if taken < len(payload):
            self.pending.append(payload[taken:])
            self.pending_end = end
            self.session.flush_soon()
            return False
        if end:
            self._finish()
        self.session.flush_soon()
        return True

    def trailers(self, fields: Fields) -> None:
        if self.pending:
            self.pending_trailers = fields
            self.pending_end = True
            return
        self.session.front.send_trailers(self.stream_id, fields)
        self._finish()
        self.session.flush_soon()

    def writable(self) -> None:
        """The client's window opened: send what waits, then let the backend be read."""
        pending = self.pending
        if not pending:
            return
        front = self.session.front
        while pending:
            piece = pending[0]
            last = len(pending) == 1 and self.pending_end and self.pending_trailers is None
            taken = front.send_body(self.stream_id, piece, last)
            self.bytes_out += taken
            if taken < len(piece):
                pending[0] = piece[taken:]
                return
            pending.pop(0)
        if self.pending_trailers is not None:
            front.send_trailers(self.stream_id, self.pending_trailers)
            self._finish()
        elif self.pending_end:
            self._finish()
        elif self.exchange is not None:
            self.exchange.resume()

    def failed(self, status: int, message: str) -> None:
        """The exchange gave up: answer `status` if the client saw no head yet, else reset."""
        pages = self.error_pages
        if pages is not None and status in pages.codes and intercept_stream(self, pages, status):
            return
        self._fail(status, message)

    def _fail(self, status: int, message: str) -> None:
        if not self.responded:
            self.answer(status, message)
        else:
            self.reset(ErrorCodes.INTERNAL_ERROR, message)

    # -- what the proxy answers -----------------------------------------------------------

    def answer(
        self,
        status: int,
        message: str = "",
        variables: dict[str, str] | None = None,
        template: str | None = None,
        hsts: str | None = None,
        cors: Edits | None = None,
    ) -> None:
        """A default answer (or the template `template`), as an HTTP/2 response."""
        self._drop_exchange()
        loop = self.loop
        loop.metrics.answer(status)
        cluster_id = self.routed.cluster_id if self.routed is not None else None
        values = {
            "REQUEST_ID": self.request_id.decode("ascii"),
            "CLUSTER_ID": cluster_id or "",
            "MESSAGE": message,
            **(variables or {}),
        }
        answers = self.session.listener.answers
        if template is None:
            data = answers.render(status, cluster_id, values)
        else:
            data = answers.render_template(template, cluster_id, values)
        if hsts is None and self.routed is not None:
            hsts = edited_hsts(self.response_edits)
        data = with_hsts(data, status, hsts)
        if cors is None and self.routed is not None:
            cors = edited_cors(self.response_edits)
        if cors:
            data = with_cors(data, status, cors)
        at = data.find(HEAD_END) + len(HEAD_END)
        method = self.head.method
        try:
            response = loop.response_parser.parse(data[:at])
            status, fields, ended = h1_response_to_h2(response, method)
        except HttpSyntaxError:  # a custom answer we cannot carry: the plain status
            fields, ended = [], True
        body = b"" if ended or method == b"HEAD" else data[at:]
        self.responded = True
        self.status = status
        front = self.session.front
        front.send_response(self.stream_id, status, fields, end_stream=not body)
        if body:
            self.data(body, True)
        else:
            self._finish(message)
        if not self.client_done and self.finished:  # all of the answer went out
            front.reset(self.stream_id, ErrorCodes.NO_ERROR)  # stop the request body (RFC 9113 8.1)
        self.session.flush_soon()

    def reset(self, code: int, message: str) -> None:
        self._drop_exchange()
        self.session.front.reset(self.stream_id, code)
        self._finish(message)
        self.session.flush_soon()

    # -- ends ----------------------------------------------------------------------------

    def reset_by_client(self, code: int, remote: bool) -> None:
        """The client reset the stream (or the core did: malformed, reaped)."""
        message = "reset by the client" if remote else "stream reset"
        self._drop_exchange()
        if not self.finished:
            self._record(message if not self.responded else None)
            self.finished = True

    def connection_lost(self) -> None:
        self._drop_exchange()
        if not self.finished:
            self._record("closed before the response was complete")
            self.finished = True

    def _drop_exchange(self) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.cancel()

    def _finish(self, message: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.done()
        self._record(message)
        self.session.stream_done(self)

    def serve_errors(self, pages: ErrorPages) -> None:
        self.error_pages = pages

    def hold_connection(self, limiter: ConnLimiter, ip: str) -> None:
        """Keep this stream's connection-limit count (request_route.Holder)."""
        self.conn_limiter, self.conn_ip = limiter, ip

    def _record(self, message: str | None) -> None:
        """One finished request for the worker's metrics and access log (as HttpSession);
        called once per stream, whatever ended it: its connection-limit count goes back."""
        limiter = self.conn_limiter
        if limiter is not None:
            self.conn_limiter = None
            limiter.release(self.conn_ip)
        loop = self.loop
        ended = loop.ended
        if ended is None:
            return
        backend_id = self.backend_id
        access_log = loop.access_log if message is None else loop.error_access_log
        ended.append(
            (
                loop.now,
                self.started,
                self.response_started,
                self.status,
                message,
                self.routed,
                backend_id,
                self.bytes_in,
                self.bytes_out,
                self.request_id,
                None if access_log is None else access_log.fixed_parts(self, backend_id),  # type: ignore[arg-type]
            )
        )


def edit_fields(fields: Fields, edits: Edits) -> Fields:
    """A route's response header edits on HTTP/2 fields (as `policy.set_headers` on heads):
    a value replaces every field of that name, an empty one deletes them, an `IfAbsent` one is
    added only where none is."""
    for name, value in edits:
        key = name.lower().encode("ascii")
        present = any(field == key for field, _ in fields)
        if type(value) is IfAbsent:
            if not present:
                fields.append((key, value.encode("latin-1")))
            continue
        if present:
            fields = [(field, v) for field, v in fields if field != key]
        if value:
            fields.append((key, value.encode("latin-1")))
    return fields
