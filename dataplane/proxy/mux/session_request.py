"""The client side of a session: reading requests, routing them, forwarding them.

A mixin of HttpSession (see mux/session.py for the phases and LIFECYCLE.md for the whole story).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.body import Body, ChunkedBody, LengthBody
from dataplane.proxy.http1.forwarding import (
    forward_request,
    sticky_cookie,
)
from dataplane.proxy.http1.head import RequestHead, find_head, head_bytes
from dataplane.proxy.http1.head_scan import HeadScanner
from dataplane.proxy.mux import auth_request
from dataplane.proxy.mux.h1_stream import start_h2
from dataplane.proxy.mux.request_route import Forward, Guarded, Refusal, route_request
from dataplane.proxy.mux.session_backend import BackendSide
from dataplane.proxy.mux.session_fields import (
    ANSWER,
    BODY_PAUSED,
    CLOSED,
    EPOLLERR,
    EPOLLHUP,
    EPOLLOUT,
    EXCHANGE,
    H2,
    HEAD,
    ID_SLOT,
    INFINITY,
    NO_BUFFER,
    NO_FAILURES,
    NO_TEMPLATE,
    PIPE,
    STARVED_FRONT,
)
from dataplane.proxy.routing.access import client_address
from dataplane.proxy.routing.policy import Edits, rewrite_request_head

DISCARD_SIZE: Final = 16384  # bytes read and dropped at a time from a client we are done with
if TYPE_CHECKING:
    from dataplane.proxy.clusters import ClusterRuntime


H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RequestSide(BackendSide):
    """Reading, parsing, routing and forwarding requests (a mixin of HttpSession)."""

    __slots__ = ()

    def on_front(self, events: int) -> None:
        if events & EPOLLOUT and self.to_front is not None and not self._flush_front():
            return
        if events & (EPOLLERR | EPOLLHUP) and self.to_back is not None:
            self.close()  # reset by the client while its request waits for the backend
        elif events & ~EPOLLOUT and self.phase != CLOSED and self.to_back is None:
            self._read_front()

    def _read_front(self) -> None:
        end = self.end
        if end == len(self.buffer):
            if self.buffer is NO_BUFFER:  # nothing held since the last bytes were handed on
                if self.phase == ANSWER:
                    self._discard_front()
                    return
                pair = self.loop.buffers.take_client(self)
                if pair is None:
                    self.body_mark = BODY_PAUSED  # not reading: not the client's fault
                    self._starve(STARVED_FRONT)
                    return
                self.buffer, self.view = pair
            elif self.start:
                self._compact()
                end = self.end
            elif self.phase == HEAD:
                self._answer(431, "request head too large")
                return
            else:
                self.front_full = True  # pipelined bytes wait for the current exchange
                self._sync_masks()
                return
        try:
            # an empty buffer (most reads) is read into whole: no memoryview slice to make
            received = self.sock.recv_into(self.view[end:] if end else self.view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not received:
            self._front_closed()
            return
        self.end = end + received
        phase = self.phase
        if phase == HEAD:
            if self.listener.h2c and self.request is None and self._h2c_preface():
                return
            self._on_head_bytes()
        elif phase == EXCHANGE:
            if not self.request_done:
                now = self.loop.now
                self.deadline = now + self.back_timeout
                if now >= self.body_until and self._body_too_slow(now, received):
                    return
                self._forward_request_body()
        elif phase == PIPE:
            self._pipe(self.view[self.start : self.end], to_back=True)
            self.start = self.end = 0
        elif phase == ANSWER:
            self.start = self.end = 0  # discard what a refused client still sends
        elif phase == H2 and not self.request_done:
            now = self.loop.now
            self.deadline = now + self.back_timeout
            if now >= self.body_until and self._body_too_slow(now, received):
                return
            h2 = self.h2
            if h2 is not None:
                h2.feed()

    def _h2c_preface(self) -> bool:
        """On an `h2c` listener, a connection that opens with HTTP/2's preface speaks HTTP/2
        (prior knowledge): True when it does (or may yet: part of the preface came)."""
        data = self.view[self.start : self.end].tobytes()
        if len(data) < len(H2_PREFACE):
            return H2_PREFACE.startswith(data)
        if not data.startswith(H2_PREFACE):
            return False
        self._become_h2(data)
        return True

    def _discard_front(self) -> None:
        """Read and drop what a client still sends while we linger (no buffer needed)."""
        try:
            received = self.sock.recv(DISCARD_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not received:
            self._front_closed()

    def _compact(self) -> None:
        size = self.end - self.start
        self.view[:size] = self.view[self.start : self.end]  # memmove: the ranges may overlap
        self.start, self.end = 0, size

    def _front_closed(self) -> None:
        phase = self.phase
        if phase in (EXCHANGE, H2) and self.request_done and self.response is not None:
            self.closing = True  # half-closed client: finish this response, then close
            return
        self.close()

    def _on_head_bytes(self) -> None:
        if self.head_started:
            self._on_head_piece()
            return
        head, at, _ = find_head(self.buffer, self.start, self.end, self.last_head)
        if at < 0:
            if self.start < self.end:
                self._head_in_pieces()
            return
        self.start = at
        self._begin_request(head)

    def _head_in_pieces(self) -> None:
        """The first bytes of a head that did not come whole: the request timeout starts, and
        a scanner follows the head from now on (http1/head_scan.py), refusing it as soon as it
        can no longer become valid."""
        self.head_started = True
        now = self.loop.now
        self.request_started = now
        self._set_deadline(now + self.listener.request_timeout)
        self.head_scan = HeadScanner()
        self._on_head_piece()

    def _on_head_piece(self) -> None:
        scan = self.head_scan
        assert scan is not None
        try:
            length = scan.feed(self.buffer, self.start, self.end)
        except HttpSyntaxError as error:
            self.loop.counters.early_rejects += 1
            self._answer(400, error.reason)
            return
        if length < 0:
            if self.start == 0 and self.end == len(self.buffer):  # no room left: say so now
                if scan.in_request_line:
                    self._answer(400, f"request line longer than {self.end} bytes")
                else:
                    self._answer(431, "request head too large")
            return
        self.head_scan = None
        head = head_bytes(self.buffer, self.start, self.start + length)
        self.start += length
        self._begin_request(head)

    def _begin_request(self, head: bytes) -> None:
        loop = self.loop
        self.request_id = loop.request_ids.next()
        if not self.head_started:
            self.request_started = loop.now
        self.bytes_in, self.bytes_out = len(head), 0
        self.routed = None
        if self.error_pages is not None:
            self.error_pages = None  # the previous request's route's
        listener = self.listener
        cached = self.last_request
        if cached is not None and head == self.last_head:
            request = cached  # keep-alive clients repeat themselves: parse once
        else:
            try:
                request = listener.parse(head)
            except HttpSyntaxError as error:
                self._answer(error.status, error.reason)
                return
            self.last_head, self.last_request, self.template = head, request, None
            listener.recent_head, listener.recent_request = head, request
        self.request = request
        if request.host != self.host_raw:
            host = listener.normalize_host(request.host)
            if host is None:
                self._answer(400, "invalid Host")
                return
            if self.sni_binding is not None and not self.sni_binding.allows(host):
                self._answer(421, f"{host} is not covered by this connection's certificate")
                return
            self.host_raw, self.host = request.host, host
        decision = route_request(
            listener, request, self.host, None, loop.now, self, self.sni_binding
        )
        if type(decision) is not Forward:
            self._not_forwarded(decision)
            return
        cluster, edits, body_limit = decision
        self.routed = cluster
        self._forward(request, cluster, edits, body_limit)

    def _not_forwarded(self, decision: Forward | Guarded | Refusal) -> None:
        """A request refused, or one waiting for its external authorisation first."""
        self.routed = decision.cluster
        if not isinstance(decision, Refusal):
            assert isinstance(decision, Guarded)
            auth_request.start(self, *decision)  # type: ignore[arg-type]
            return
        self._answer(
            decision.status,
            decision.message,
            variables=decision.variables,
            name=decision.template,
            hsts=decision.hsts,
            cors=decision.cors,
        )

    def _client_ip(self) -> str:
        """The address a route's access rules apply to (routing/access.py)."""
        context = self.context
        ip = context.peer_ip.decode("ascii")
        if context.trusted:
            assert self.request is not None
            ip = client_address(ip, self.request.x_forwarded_for, self.listener.trusted_proxies)
        return ip

    def _forward(
        self,
        request: RequestHead,
        cluster: ClusterRuntime,
        edits: Edits | None,
        body_limit: int | None = None,
    ) -> None:
        if cluster is not self.cluster and not self._bind_cluster(cluster):
            return
        listener = self.listener
        self.back_timeout = cluster.back_timeout or listener.back_timeout
        sticky_name = b""
        if cluster.sticky_session:
            sticky_name = cluster.sticky_name or listener.sticky_name
            self.sticky_id = sticky_cookie(request, sticky_name) if request.cookies else None
        back = self.back
        if back is not None and (
            back.cluster_id != cluster.cluster_id
            or (self.sticky_id is not None and self.sticky_id != back.backend.sticky_id)
            or back.backend not in cluster.live_backends
            or cluster.hash_key is not None  # each request's key picks (a pooled connection)
        ):
            self._release_back()
            back = None
        template = self.template
        if template is None:
            # This head's first request on this connection (all that most `Connection:
            # close` clients send): rendered with its id, no template to split and join.
            head = forward_request(request, self.context, self.request_id, sticky_name)
            self.template = NO_TEMPLATE  # the next request with this head makes one
        else:
            if template is NO_TEMPLATE or self.template_sticky != sticky_name:
                rendered = forward_request(request, self.context, ID_SLOT, sticky_name)
                template = self.template = rendered.split(ID_SLOT)
            head = self.request_id.join(template)
        self.template_sticky = sticky_name
        self.response_edits = ()
        if edits is not None:
            head = rewrite_request_head(head, request, edits)
            self.response_edits = edits.response_headers
        if cluster.http2:  # its backends speak h2c: the request goes as a stream
            start_h2(self, request, cluster, head, body_limit)
            return
        if request.chunked:
            body: Body | None = ChunkedBody() if body_limit is None else ChunkedBody(body_limit)
        elif request.content_length:
            body = LengthBody(request.content_length)
        else:
            body = None
        self.request_body = body
        parts: list[bytes | memoryview] = [head]
        taken = 0
        if body is not None:
            try:
                taken = body.feed(self.buffer, self.start, self.end)
            except HttpSyntaxError as error:
                self._answer(error.status, error.reason)
                return
            if taken:
                parts.append(self.view[self.start : self.start + taken])
                self.start += taken
                self.bytes_in += taken
            self.request_done = body.done
            self.replay = None
            if body.done or not listener.body_window:
                self.body_until = INFINITY
            else:  # the body's first window; one behind a new connection starts paused
                self.body_until = self.loop.now + listener.body_window
                self.body_mark = self.bytes_in if back is not None else BODY_PAUSED
        else:
            self.request_done = True
            self.replay = head
        self.response = self.response_body = None
        self.response_done = False
        if self.failed:
            self.failed = NO_FAILURES
        if back is None:
            self.to_back = parts
            self._connect()
            return
        self.phase = EXCHANGE
        deadline = self.loop.now + self.back_timeout
        if deadline >= self.timer_slot:
            self.deadline = deadline  # the wheel re-files it lazily (`_set_deadline`, inlined)
        else:
            self.loop.timers.arm(self, deadline)
        back.backend.active_requests += 1
        if not self._send_to_back(parts, len(head) + taken):
            self.body_mark = BODY_PAUSED  # the backend is behind: we stop reading the client
        elif self.start == self.end:
            self.start = self.end = 0

    def _bind_cluster(self, cluster: ClusterRuntime) -> bool:
        """Count this connection against (cluster, client IP); False once answered 429."""
        listener = self.listener
        peers = listener.peers  # compiled: native calls (peer_counts.py)
        ip = self.peer_key[0]
        if self.cluster is not None:
            peers.release(ip, self.peer_key[1])
        cluster_id = cluster.cluster_id
        limit = cluster.max_connections_per_ip or listener.proxy.max_connections_per_ip
        if limit and peers.count(ip, cluster_id) >= limit:
            self.cluster = None
            self.peer_key = (ip, "")
            retry = cluster.retry_after or listener.proxy.retry_after
            self._answer(429, "too many connections from this address", retry_after=retry)
            return False
        peers.acquire(ip, cluster_id)
        self.peer_key = (ip, cluster_id)
        self.cluster = cluster
        return True

    def _forward_request_body(self) -> None:
        body = self.request_body
        assert body is not None
        try:
            taken = body.feed(self.buffer, self.start, self.end)
        except HttpSyntaxError as error:
            self._fail(error.status, error.reason)  # 400, or 413 past a chunked body's limit
            return
        if body.done:
            self.request_done = True
        if taken:
            part = self.view[self.start : self.start + taken]
            self.start += taken
            self.bytes_in += taken
            if not self._send_to_back([part], taken):
                self.body_mark = BODY_PAUSED
                return
        if self.start == self.end:
            self.start = self.end = 0

    def _body_resumed(self) -> None:
        """The proxy reads the request body again after a pause of its own (a new backend
        connection was opened): a fresh window starts now."""
        if self.body_until != INFINITY:
            self.body_mark = self.bytes_in
            self.body_until = self.loop.now + self.listener.body_window

    def _body_too_slow(self, now: float, received: int) -> bool:
        """At the client's first read after a body window ends: True (and 408) if the bytes
        of that window came slower than the listener's `request_body_min_rate`, else a new
        window begins. A window in which the proxy stopped reading (BODY_PAUSED) or that saw
        no byte before this read (a client waiting for `100 Continue`) is not held against
        the client. Bytes held unread count as received (see LIFECYCLE.md, Timeouts)."""
        listener = self.listener
        if not listener.body_window:  # turned off by a listener update meanwhile
            self.body_until = INFINITY
            return False
        held = self.bytes_in + self.end - self.start  # every byte of the request so far
        before = held - received
        mark = self.body_mark
        if mark != BODY_PAUSED and before > mark:
            elapsed = now - self.body_until + listener.body_window
            if held - mark < listener.body_min_rate * elapsed:
                counters = self.loop.counters
                counters.body_timeouts += 1
                counters.timeouts += 1
                self._fail(408, f"request body slower than {listener.body_min_rate:g} bytes/s")
                return True
        self.body_mark = before
        self.body_until = now + listener.body_window
        return False
