"""The backend side of a session: connecting (with retries), reading responses, ending an
exchange. A mixin of HttpSession (see mux/session.py and LIFECYCLE.md).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1 import head as http_head
from dataplane.proxy.http1.body import Body, ChunkedBody, LengthBody, UntilCloseBody
from dataplane.proxy.http1.forwarding import (
    CLOSE,
    KEEP_ALIVE,
    forward_response,
)
from dataplane.proxy.http1.head import (
    HEAD_END,
    SMALL_READ,
    find_head,
    has_bare_line_feed,
    head_bytes,
)
from dataplane.proxy.mux import backend_events, error_pages
from dataplane.proxy.mux.backend_choice import next_backend, sticky_cookie_value
from dataplane.proxy.mux.backend_tls import HANDSHAKING
from dataplane.proxy.mux.session_fields import (
    CONNECTING,
    EPOLLERR,
    EPOLLHUP,
    EPOLLIN,
    EPOLLOUT,
    EXCHANGE,
    HEAD,
    ID_SLOT,
    MAX_CONNECT_TRIES,
    NO_BUFFER,
    PIPE,
    STARVED_BACK,
    STOP_GRACE_SECONDS,
)
from dataplane.proxy.mux.session_flow import FlowControl, total_length
from dataplane.proxy.routing.policy import set_headers

if TYPE_CHECKING:
    from dataplane.proxy.mux.backend_pool import BackendConnection


class BackendSide(FlowControl):
    """Backend connections and responses (a mixin of HttpSession)."""

    __slots__ = ()

    def _connect(self) -> None:
        """Open a connection to a backend of the cluster, trying others on failure."""
        loop = self.loop
        cluster = self.cluster
        assert cluster is not None
        key = None
        if cluster.hash_key is not None:  # upstream-hash-by: the request's key
            assert self.request is not None
            key = cluster.hash_key.key(self.request, self._client_ip, self.listener.scheme)
        while len(self.failed) < MAX_CONNECT_TRIES:
            backend = next_backend(loop, cluster, self.sticky_id, self.failed, key)
            if backend is None:
                break
            if cluster.sticky_session:
                value = sticky_cookie_value(cluster, backend, self.sticky_id, self.listener)
                self.set_cookie = b"\r\nSet-Cookie: " + value if value else b""
            pooled = loop.pool.take(backend, cluster.cluster_id, cluster.backend_tls)
            if pooled is not None:
                self._attach(pooled, EPOLLIN)
                self._connected()
                return
            conn = loop.pool.open(backend, cluster.cluster_id, cluster.backend_tls)
            code = conn.connect()
            if code in (0, errno.EINPROGRESS):
                loop.counters.backend_connections += 1
                self._attach(conn, EPOLLOUT)
                self.phase = CONNECTING
                self._sync_masks()  # the client waits (no reads) until the request is sent
                timeout = cluster.connect_timeout or self.listener.connect_timeout
                self._set_deadline(loop.now + timeout)
                return
            conn.sock.close()
            backend_events.connect_failed(loop, cluster, backend)
            self.failed |= {backend.backend_id}
        self.to_back = None
        pages = self.error_pages
        if pages is not None and 503 in pages.codes and error_pages.intercept(self, pages, 503):
            return  # served by the error cluster instead
        self._answer(503, "no backend available")

    def _attach(self, conn: BackendConnection, mask: int) -> None:
        self.back = conn
        self.backend_id = conn.backend.backend_id
        loop = self.loop
        if conn.fd in loop.handlers:  # a pooled connection, registered while idle
            loop.set_handler(conn.fd, self.on_back)
            if conn.mask != mask:
                loop.modify(conn.fd, mask)
        else:
            loop.register(conn.fd, self.on_back, mask)
        conn.mask = mask

    def _connect_failed(self) -> None:
        back = self.back
        assert back is not None
        assert self.cluster is not None
        backend_events.connect_failed(self.loop, self.cluster, back.backend)
        self.failed |= {back.backend.backend_id}
        back.close()
        self.back = None
        self._connect()

    def _connected(self) -> None:
        back = self.back
        assert back is not None
        back.connected = True
        self.phase = EXCHANGE
        self._set_deadline(self.loop.now + self.back_timeout)
        back.backend.active_requests += 1
        parts, self.to_back = self.to_back or [], None
        self._sync_masks()
        if self._send_to_back(parts, total_length(parts)) and not self.request_done:
            self._body_resumed()  # the body's rate is measured from now on
            self._forward_request_body()

    def on_back(self, events: int) -> None:
        if self.phase == CONNECTING:
            back = self.back
            assert back is not None
            if code := back.connect_error():
                if code != HANDSHAKING:  # else TLS to the backend under way
                    self._connect_failed()
            else:
                took = self.loop.now - back.connect_started
                assert self.cluster is not None
                backend_events.connect_succeeded(self.loop, self.cluster, back.backend, took)
                self._connected()
            return
        if events & EPOLLOUT and self.to_back is not None and not self._flush_back():
            return
        if events & (EPOLLERR | EPOLLHUP) and self.to_front is not None:
            self._back_closed()  # reset by the backend while the client is slow to read
        elif events & ~EPOLLOUT and self.back is not None and self.to_front is None:
            self._read_back()

    def _read_back(self) -> None:
        back = self.back
        assert back is not None
        end = back.end
        if end == len(back.buffer):
            if back.buffer is NO_BUFFER:  # nothing held since the last bytes were handed on
                if self.phase != EXCHANGE and self.phase != PIPE:
                    self._drop_back()  # a kept connection speaking out of turn (or hanging up)
                    return
                pair = self.loop.buffers.take_relay(self)
                if pair is None:
                    self._starve(STARVED_BACK)
                    return
                back.buffer, back.view = pair
            elif back.start:
                size = end - back.start
                back.view[:size] = back.view[back.start : end]  # memmove: they may overlap
                back.start, end = 0, size
            else:
                self._fail(502, "response head too large")
                return
        try:
            received = back.sock.recv_into(back.view[end:] if end else back.view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            received = 0
        if not received:
            self._back_closed()
            return
        back.end = end + received
        phase = self.phase
        if phase == EXCHANGE:
            self.deadline = self.loop.now + self.back_timeout
            if self.response is None:
                self._on_response_head_bytes(back)
            else:
                self._forward_response_body(back)
        elif phase == PIPE:
            self._pipe(back.view[back.start : back.end], to_back=False)
            back.start = back.end = 0
        else:
            self._drop_back()  # a backend speaking out of turn cannot be trusted any more

    def _on_response_head_bytes(self, back: BackendConnection) -> None:
        buffer, view = back.buffer, back.view
        while True:
            start = copied_from = back.start
            head, at, copied = find_head(buffer, start, back.end, back.last_head)
            # The buffer is larger than `buffer_size` (bodies), the limit on heads is not.
            if at < 0:
                if has_bare_line_feed(head or view[start : back.end].tobytes()):
                    self._fail(502, "bare LF in response head")
                elif back.end - start >= self.loop.buffer_size:
                    self._fail(502, "response head too large")
                return
            if at - start > self.loop.buffer_size:
                self._fail(502, "response head too large")
                return
            back.start = at
            cached = back.last_response
            if cached is not None and head == back.last_head:
                response = cached  # the same head as last time (the Date changes once a second)
            else:
                try:
                    response = self.loop.response_parser.parse(head)
                except HttpSyntaxError as error:
                    self._fail(502, error.reason)
                    return
                back.last_head, back.last_response, back.template = head, response, None
            status = response.status
            if status >= 200 or status == 101:
                break
            self._no_delay()  # 1xx: the final answer follows in another write
            if not self._send_to_front([head], len(head)):
                return
        self.replay = None
        request = self.request
        assert request is not None
        if status == 101:
            if request.upgrade is None:
                self._fail(502, "101 Switching Protocols without an Upgrade request")
                return
            self._start_pipe(back, response)
            return
        pages = self.error_pages
        if (
            pages is not None
            and status in pages.codes
            and error_pages.intercept(self, pages, status)
        ):
            return  # served by the error cluster instead
        self.response = response
        loop = self.loop
        framing = response.framing(request.method)
        closing = self.closing = (
            self.closing
            or (loop.stopping and self.buffer.find(HEAD_END, self.start, self.end) < 0)
            or not (request.keep_alive and self.request_done and framing != http_head.UNTIL_CLOSE)
        )
        connection = CLOSE if closing else KEEP_ALIVE if request.http10 else b""
        id_header = self.context.id_header
        template = back.template
        if (
            template is None
            or back.template_connection is not connection
            or back.template_cookie != self.set_cookie
            or back.template_id_header != id_header
        ):
            rendered = forward_response(response, id_header + ID_SLOT, connection, self.set_cookie)
            template = back.template = rendered.split(ID_SLOT)
            back.template_connection = connection
            back.template_cookie = self.set_cookie
            back.template_id_header = id_header
        out = self.request_id.join(template)
        if self.response_edits:
            out = set_headers(out, self.response_edits)
        self.response_started = loop.now
        start, end = back.start, back.end
        body: Body | None = None
        if framing == http_head.LENGTH:
            length = response.content_length or 0
            if end - start < length:
                body = LengthBody(length)
        elif framing == http_head.CHUNKED:
            body = ChunkedBody()
        elif framing == http_head.UNTIL_CLOSE:
            body = UntilCloseBody()
        else:
            length = 0
        if body is not None:
            try:
                length = body.feed(buffer, start, end)
            except HttpSyntaxError:
                self.close()  # the head is already on its way: nothing better than closing
                return
        self.response_body = body
        back.start = start + length
        self.response_done = done = body is None or body.done
        if not done and not self.nodelay:
            self._no_delay()  # the body's last bytes must not wait for an ACK
        # a short body is copied out (a slice of the mmap: bytes), cheaper than a memoryview
        stop = start + length
        offset = start - copied_from
        if stop - copied_from <= len(copied):  # the body came with the head: already copied
            piece: bytes | memoryview = copied[offset : offset + length]
        else:
            piece = head_bytes(buffer, start, stop) if length <= SMALL_READ else view[start:stop]
        if self._send_to_front([out, piece], len(out) + length) and done:
            self._finish_exchange()

    def _forward_response_body(self, back: BackendConnection) -> None:
        body = self.response_body
        if body is None:
            self._drop_back()
            return
        try:
            taken = body.feed(back.buffer, back.start, back.end)
        except HttpSyntaxError:
            self.close()
            return
        part = back.view[back.start : back.start + taken]
        back.start += taken
        self.response_done = body.done
        if not self._send_to_front([part], taken):
            return
        if back.start == back.end:
            back.start = back.end = 0
        if self.response_done:
            self._finish_exchange()

    def _back_closed(self) -> None:
        """The backend hung up (or the socket failed)."""
        phase = self.phase
        if phase == EXCHANGE and self.response is None:
            back = self.back
            assert back is not None
            if back.requests and self.replay is not None and back.start == 0 == back.end:
                # A pooled connection closed under us before answering: replay once, fresh.
                self._drop_back()
                self.to_back = [self.replay]
                self.replay = None
                self._connect()
                return
            self._fail(502, "backend closed the connection before answering")
        elif phase == EXCHANGE and isinstance(self.response_body, UntilCloseBody):
            self._drop_back()
            self.response_done = True
            self.closing = True
            if self.to_front is None:
                self.close()
        elif phase in (EXCHANGE, PIPE):
            self._drop_back()
            if self.to_front is None:
                self.close()
            else:
                self.closing = True
        else:
            self._drop_back()

    def _finish_exchange(self) -> None:
        """The whole response has been handed to the client socket."""
        back = self.back
        response = self.response
        self._record(response.status if response is not None else 0)
        if back is not None:
            back.backend.active_requests -= 1
            back.requests += 1
            if (
                response is None
                or not response.keep_alive
                or not self.request_done
                or back.start != back.end
                or isinstance(self.response_body, UntilCloseBody)
            ):
                self._drop_back()
            else:
                back.start = back.end = 0
        self.phase = HEAD
        if self.closing or not self.request_done:
            if self.loop.stopping:
                self._close_gently()
            else:
                self.close()
            return
        if not self.nodelay:
            self._no_delay()  # kept alive: the next response must not wait behind this one
        self.request = self.response = None
        self.request_body = self.response_body = None
        self.head_started = False
        self.deadline = self.loop.now + self.listener.front_timeout  # later: no wheel work
        if self.loop.stopping:  # answered without `close` (pipelined, or begun before the stop)
            self.loop.timers.arm(self, self.loop.now + STOP_GRACE_SECONDS)
        if self.front_full:
            self.front_full = False
            self._sync_masks()
        if self.start < self.end:
            self._on_head_bytes()
        else:
            self.start = self.end = 0
