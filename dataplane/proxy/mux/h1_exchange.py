"""An HTTP/2 stream's request carried over an HTTP/1.1 backend connection (h2 -> h1).

The exchange picks a backend as an HTTP/1.1 session does (the cluster's load balancing, sticky
sessions, up to MAX_CONNECT_TRIES backends, the circuit breaker's events), takes an idle pooled
connection or opens one, writes the request head and body (chunked when the client gave no
Content-Length), reads the response head with the worker's strict parser, and hands the
response to its stream as HTTP/2 fields and de-chunked payload (trailers of a chunked response
become HTTP/2 trailers). A connection that ends clean goes back to the pool.

Back-pressure: request body bytes are credited to the client only once written to the backend
(`H2Stream.body_forwarded`); the backend is not read while the stream holds response bytes the
client's window cannot take (`pause` until `resume`). Timeouts: the cluster's (or listener's)
connect_timeout while connecting, back_timeout while waiting for response bytes.
"""

from __future__ import annotations

import errno
import select
from typing import TYPE_CHECKING, Final

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1 import head as http_head
from dataplane.proxy.http1.body import ChunkedBody, LengthBody, Span, UntilCloseBody
from dataplane.proxy.http1.head import HEAD_END
from dataplane.proxy.http2.translate import backend_response, chunk, last_chunk
from dataplane.proxy.mux import backend_events
from dataplane.proxy.mux.backend_choice import next_backend, sticky_cookie_value
from dataplane.proxy.mux.backend_tls import HANDSHAKING
from dataplane.proxy.mux.session_fields import MAX_CONNECT_TRIES
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.head import ResponseHead
    from dataplane.proxy.http2.events import Fields
    from dataplane.proxy.mux.backend_pool import BackendConnection
    from dataplane.proxy.mux.h2_stream import H2Stream

EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT
READ_SIZE: Final = 65_536
MAX_READS: Final = 4  # reads per readiness event while each fills READ_SIZE
CONNECTING, WAITING, READING, DONE = range(4)
UNCOPIED: Final = 1024  # body bytes after a head: from this size handed on as a view (fast_path's)


class H1Exchange:
    __slots__ = (
        "body",
        "cluster",
        "conn",
        "counted",
        "credits",
        "deadline",
        "failed",
        "inbox",
        "loop",
        "method",
        "out",
        "paused",
        "phase",
        "replay",
        "request_chunked",
        "request_ended",
        "response",
        "reusable",
        "sticky_id",
        "stream",
        "timer_slot",
    )

    def __init__(
        self,
        stream: H2Stream,
        cluster: ClusterRuntime,
        head: bytes,
        chunked: bool,
        sticky_id: str | None,
    ) -> None:
        self.stream = stream
        self.loop = stream.loop
        self.cluster = cluster
        self.method = stream.head.method
        self.out: list[bytes] = [head]
        self.credits: list[int] = [0]  # request body bytes each piece of `out` carries
        self.request_chunked = chunked
        self.request_ended = stream.client_done
        self.replay = head if stream.client_done else None  # once, on a pooled conn's close
        self.sticky_id = sticky_id
        self.conn: BackendConnection | None = None
        self.failed: set[str] = set()
        self.phase = CONNECTING
        self.inbox = bytearray()
        self.response: ResponseHead | None = None
        self.body: LengthBody | ChunkedBody | UntilCloseBody | None = None
        self.paused = False
        self.counted = False  # counted in its backend's active_requests
        self.reusable = True
        self.deadline = 0.0
        self.timer_slot = NOT_FILED

    # -- connecting ------------------------------------------------------------------------

    def start(self) -> None:
        self._connect()

    def _connect(self) -> None:
        loop = self.loop
        cluster = self.cluster
        stream = self.stream
        key = None
        if cluster.hash_key is not None and stream.request is not None:
            scheme = stream.session.listener.scheme
            key = cluster.hash_key.key(stream.request, stream._client_ip, scheme)
        while len(self.failed) < MAX_CONNECT_TRIES:
            backend = next_backend(loop, cluster, self.sticky_id, self.failed, key)
            if backend is None:
                break
            set_cookie = sticky_cookie_value(
                cluster, backend, self.sticky_id, stream.session.listener
            )
            pooled = loop.pool.take(backend, cluster.cluster_id, cluster.backend_tls)
            if pooled is not None:
                stream.chose(pooled, set_cookie)
                self._attach(pooled)
                self._connected()
                return
            conn = loop.pool.open(backend, cluster.cluster_id, cluster.backend_tls)
            code = conn.connect()
            if code in (0, errno.EINPROGRESS):
                loop.counters.backend_connections += 1
                stream.chose(conn, set_cookie)
                self._attach(conn)
                self.phase = CONNECTING
                timeout = cluster.connect_timeout or stream.session.listener.connect_timeout
                loop.timers.arm(self, loop.now + timeout)
                self._sync()
                return
            conn.sock.close()
            backend_events.connect_failed(loop, cluster, backend)
            self.failed.add(backend.backend_id)
        self.stream.failed(503, "no backend available")

    def _attach(self, conn: BackendConnection) -> None:
        self.conn = conn
        loop = self.loop
        if conn.fd in loop.handlers:  # pooled: registered while idle
            loop.set_handler(conn.fd, self.on_back)
        else:
            loop.register(conn.fd, self.on_back, EPOLLOUT)
            conn.mask = EPOLLOUT

    def _connected(self) -> None:
        conn = self.conn
        assert conn is not None
        conn.connected = True
        conn.backend.active_requests += 1
        self.counted = True
        self.phase = WAITING
        self._arm_back()
        self._flush()

    def _connect_failed(self) -> None:
        conn = self.conn
        assert conn is not None
        backend_events.connect_failed(self.loop, self.cluster, conn.backend)
        self.failed.add(conn.backend.backend_id)
        self.conn = None
        conn.close()
        self._connect()

    # -- events ----------------------------------------------------------------------------

    def on_back(self, events: int) -> None:
        conn = self.conn
        if conn is None or self.phase == DONE:
            return
        if self.phase == CONNECTING:
            if code := conn.connect_error():
                if code != HANDSHAKING:  # else TLS to the backend under way
                    self._connect_failed()
                return
            took = self.loop.now - conn.connect_started
            backend_events.connect_succeeded(self.loop, self.cluster, conn.backend, took)
            self._connected()
            return
        if events & EPOLLOUT and self.out:
            self._flush()
            if self.conn is None:
                return
        if events & ~EPOLLOUT and not self.paused:
            self._read()

    def on_timeout(self, now: float) -> None:
        if self.phase == CONNECTING:
            self._connect_failed()
        elif self.phase in (WAITING, READING) and not self.paused:
            self.loop.counters.timeouts += 1
            self._abort(504, "timeout")
        elif self.phase != DONE:
            self._arm_back()

    def _arm_back(self) -> None:
        timeout = self.cluster.back_timeout or self.stream.session.listener.back_timeout
        self.loop.timers.arm(self, self.loop.now + timeout)

    def _sync(self) -> None:
        conn = self.conn
        if conn is None:
            return
        if self.phase == CONNECTING:
            mask = EPOLLOUT
        else:
            mask = (0 if self.paused else EPOLLIN) | (EPOLLOUT if self.out else 0)
        if mask != conn.mask:
            conn.mask = mask
            self.loop.modify(conn.fd, mask)

    # -- the request -----------------------------------------------------------------------

    def send_body(self, data: bytes, end: bool) -> None:
        if self.request_ended:
            self.stream.body_forwarded(len(data))  # a body after the end: dropped, credited
            return
        if data:
            self.out.append(chunk(data) if self.request_chunked else data)
            self.credits.append(len(data))
        if end:
            self._end_request(None)
        if self.phase != CONNECTING:
            self._flush()

    def send_trailers(self, fields: Fields) -> None:
        if not self.request_ended:
            self._end_request(fields)
            if self.phase != CONNECTING:
                self._flush()

    def _end_request(self, trailers: Fields | None) -> None:
        self.request_ended = True
        if self.request_chunked:
            self.out.append(last_chunk(trailers))  # trailers cross only on a chunked body
            self.credits.append(0)

    def _flush(self) -> None:
        conn = self.conn
        assert conn is not None
        out, credits = self.out, self.credits
        credited = 0
        while out:
            try:
                sent = conn.sock.sendmsg(out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._back_closed()
                return
            while sent and out:
                piece = out[0]
                if sent >= len(piece):
                    sent -= len(piece)
                    out.pop(0)
                    credited += credits.pop(0)
                else:
                    out[0] = piece[sent:]
                    sent = 0
        if credited:
            self.stream.body_forwarded(credited)
        self._sync()

    # -- the response ----------------------------------------------------------------------

    def _read(self) -> None:
        """Read the backend while it fills whole reads (up to MAX_READS): a response of
        100 KiB goes to the client in one turn of the loop, one write, instead of two."""
        for _ in range(MAX_READS):
            conn = self.conn
            if conn is None or self.paused or self.phase == DONE:
                return
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            received = len(data)
            if not received:
                self._back_closed()
                return
            self.replay = None
            self._arm_back()
            if self.response is None:
                inbox = self.inbox
                if inbox:  # the head came in pieces
                    inbox += data
                    data = bytes(inbox)
                    inbox.clear()
                self._read_head(data)
            else:
                self._feed(data)
            if received < READ_SIZE:
                return

    def _read_head(self, data: bytes) -> None:
        """Read the response head(s) at the start of `data`, then feed the body bytes after it
        (read from `data` itself: a 64 KiB read is not copied through `inbox` twice)."""
        loop = self.loop
        position = 0
        while True:
            at = data.find(HEAD_END, position)
            if at < 0:
                if len(data) - position > loop.buffer_size:
                    self._abort(502, "response head too large")
                    return
                self.inbox += data[position:] if position else data
                return
            head = data[position : at + 4]
            position = at + 4
            try:
                response, status, fields = backend_response(loop.response_parser, head, self.method)
            except HttpSyntaxError as error:
                self._abort(502, error.reason)
                return
            if status >= 200:
                break
            self.stream.informational(status, fields)
        rest = len(data) > position
        self.response = response
        self.phase = READING
        framing = response.framing(self.method)
        if framing == http_head.LENGTH and response.content_length:
            self.body = LengthBody(response.content_length)
        elif framing == http_head.CHUNKED:
            self.body = ChunkedBody()
        elif framing == http_head.UNTIL_CLOSE:
            self.body = UntilCloseBody()
            self.reusable = False
        if not response.keep_alive or (self.body is None and rest):
            self.reusable = False  # bytes after a bodiless response are not to be trusted
        self.stream.respond(status, fields, self.body is None)
        if self.body is not None and rest and self.phase != DONE:
            self._feed(data, position)

    def _feed(self, data: bytes, start: int = 0) -> None:
        """The body bytes of `data` from `start` (after a head read with them) to the stream:
        a large payload is handed on as a view of `data` (immutable) rather than a copy."""
        body = self.body
        if body is None or self.phase == DONE:
            self.reusable = False
            return
        end = len(data)
        payload: bytes | memoryview
        try:
            if type(body) is ChunkedBody:
                spans: list[Span] = []
                taken = body.decode(data, start, end, spans)
                payload = b"".join([data[a:b] for a, b in spans])
            else:
                taken = body.feed(data, start, end)
                if taken == end:
                    payload = data  # all of it (compiled, `data[:taken]` would copy it)
                elif not start:
                    payload = data[:taken]
                elif taken < UNCOPIED:
                    payload = data[start : start + taken]
                else:
                    payload = memoryview(data)[start : start + taken]
        except HttpSyntaxError as error:
            self._abort(502, error.reason)
            return
        if taken < end - start:
            self.reusable = False  # bytes past the response's end
        stream = self.stream
        if body.done:
            trailers = body.trailers if type(body) is ChunkedBody else None
            if trailers:
                if payload:
                    stream.data(payload, False)
                stream.trailers(trailers)
            else:
                stream.data(payload, True)
            return
        if payload and not stream.data(payload, False):
            self.pause()

    def pause(self) -> None:
        """The stream holds response bytes its client cannot take yet: stop reading."""
        self.paused = True
        self._sync()

    def resume(self) -> None:
        if self.paused and self.phase != DONE:
            self.paused = False
            self._arm_back()
            self._sync()

    def _back_closed(self) -> None:
        conn = self.conn
        if self.response is None:
            if conn is not None and conn.requests and self.replay is not None:
                # A pooled connection closed under us before answering: once more, fresh.
                self.out, self.credits = [self.replay], [0]
                self.replay = None
                self._release(reuse=False)
                self._connect()
                return
            self._abort(502, "backend closed the connection before answering")
        elif type(self.body) is UntilCloseBody:
            self.reusable = False
            self.stream.data(b"", True)
        else:
            self._abort(502, "backend closed the connection in the response")

    def _abort(self, status: int, message: str) -> None:
        self.reusable = False
        self.stream.failed(status, message)  # cancels this exchange

    # -- ends ------------------------------------------------------------------------------

    def done(self) -> None:
        """The stream is over (the response went whole to the client, or it was answered)."""
        body = self.body
        clean = (
            self.phase == READING
            and self.reusable
            and self.request_ended
            and not self.out
            and (body is None or body.done)
        )
        self.phase = DONE
        self._release(reuse=clean)

    def cancel(self) -> None:
        self.phase = DONE
        self._release(reuse=False)

    def _release(self, reuse: bool) -> None:
        loop = self.loop
        loop.timers.cancel(self)
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if self.counted:
            conn.backend.active_requests -= 1
            self.counted = False
        if reuse and conn.connected:
            conn.requests += 1
            loop.pool.give_back(conn)
        else:
            conn.close()
