"""Flow control of a session: buffers, gathered writes, back-pressure, and the upgrade pipe.

Bytes are read into one buffer per direction (the client's in the session, the backend's in its
BackendConnection), lent by the worker's pool (buffers.py) while bytes sit in it, and sent with
one gathered call. When a send is partial, the rest stays in `to_front` / `to_back` (views into
those buffers, never copies) and the socket that feeds it stops being read until the other one
drains, so memory per connection is bounded by two buffers whatever the body size, and is none
at all once every byte read has been handed on.
"""

from __future__ import annotations

from contextlib import suppress
from socket import IPPROTO_TCP, TCP_NODELAY
from typing import TYPE_CHECKING

from dataplane.proxy.http1.forwarding import forward_response
from dataplane.proxy.mux.session_fields import (
    ANSWER,
    CLOSED,
    CONNECTING,
    EPOLLIN,
    EPOLLOUT,
    EXCHANGE,
    H2,
    NO_BUFFER,
    NO_VIEW,
    PIPE,
    STARVED_BACK,
    STARVED_FRONT,
    SessionFields,
)

if TYPE_CHECKING:
    from dataplane.proxy.http1.head import ResponseHead
    from dataplane.proxy.mux.backend_pool import BackendConnection


def _rest(parts: list[bytes | memoryview], sent: int) -> list[bytes | memoryview]:
    """What remains of a gathered write after `sent` bytes went out."""
    for index, part in enumerate(parts):
        if sent < len(part):
            return [memoryview(part)[sent:], *parts[index + 1 :]]
        sent -= len(part)
    return []


def total_length(parts: list[bytes | memoryview]) -> int:
    """The bytes of a gathered write (a loop: compiled, cheaper than `sum(map(len, ...))`)."""
    total = 0
    for part in parts:
        total += len(part)
    return total


class FlowControl(SessionFields):
    """Writing to both sides, and what to do once a backlog drains (a mixin of HttpSession)."""

    __slots__ = ()

    def _send_to_front(self, parts: list[bytes | memoryview], total: int) -> bool:
        """One gathered write of `total` bytes; False when some had to wait (or we closed)."""
        try:
            # One part (most heads, most small responses): `send`, which costs CPython no
            # iovec and buffer arrays (two mallocs) and no sequence walk: ~120 ns a call.
            sent = self.sock.send(parts[0]) if len(parts) == 1 else self.sock.sendmsg(parts)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return False
        self.bytes_out += sent
        if sent == total:
            return True
        self.to_front = _rest(parts, sent)
        self._no_delay()  # the rest goes out later, maybe behind unacknowledged bytes
        self._sync_masks()
        return False

    def _send_to_back(self, parts: list[bytes | memoryview], total: int) -> bool:
        """One gathered write of `total` bytes; False when some had to wait (or failed)."""
        back = self.back
        assert back is not None
        try:
            sock = back.sock
            sent = sock.send(parts[0]) if len(parts) == 1 else sock.sendmsg(parts)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._back_closed()
            return False
        if sent == total:
            return True
        self.to_back = _rest(parts, sent)
        self._sync_masks()
        return False

    def release_idle_buffers(self) -> bool:
        """Give back each buffer that holds no byte and that no queued send points into;
        True once the session holds none. Called by the pool at each one-second tick and when
        it runs dry, never per request: a busy connection keeps its buffers from one request to
        the next, an idle one has given them back within a second (buffers.py)."""
        if self.start == self.end and self.to_back is None and self.buffer is not NO_BUFFER:
            self.loop.buffers.give_client(self.buffer, self.view)
            self.buffer, self.view = NO_BUFFER, NO_VIEW
            self.start = self.end = 0
        back = self.back
        if back is None or back.buffer is NO_BUFFER:
            return self.buffer is NO_BUFFER
        if back.start == back.end and self.to_front is None:
            self.loop.buffers.give_relay(back.buffer, back.view)
            back.buffer, back.view = NO_BUFFER, NO_VIEW
            back.start = back.end = 0
            return self.buffer is NO_BUFFER
        return False

    def _starve(self, side: int) -> None:
        """The pool has no buffer for `side`: stop reading it until one comes back."""
        if not self.starved:
            self.loop.buffers.wait(self._fed)
        self.starved |= side
        self._sync_masks()

    def _fed(self) -> bool:
        """A buffer came back: read again (and take it then). False if we no longer wait."""
        if self.phase == CLOSED or not self.starved:
            return False
        self.starved = 0
        self._sync_masks()
        return True

    def _no_delay(self) -> None:
        """Turn Nagle off, once, when a later small write could wait for an ACK: a response
        sent in several writes, a kept-alive connection, a pipe. A single-write response on a
        closing connection (most new connections) never needs it: one system call saved."""
        if not self.nodelay:
            self.nodelay = True
            with suppress(OSError):  # a failing connection: its next I/O says so
                self.sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)

    def _flush_front(self) -> bool:
        parts = self.to_front
        assert parts is not None
        self.to_front = None
        if not self._send_to_front(parts, total_length(parts)):
            return False
        self._sync_masks()
        phase = self.phase
        if phase == ANSWER:
            self._linger()
        elif phase == H2:
            h2 = self.h2
            if h2 is not None:
                h2.drained()
        elif self.closing and self.response_done and phase == EXCHANGE and self.loop.stopping:
            self._finish_exchange()  # which half-closes: see soft_stop
        elif self.closing and (self.response_done or phase == PIPE or self.back is None):
            self.close()
        elif phase == EXCHANGE:
            back = self.back
            if self.response_done:
                self._finish_exchange()
            elif back is not None and back.start < back.end:
                if self.response is None:
                    self._on_response_head_bytes(back)
                else:
                    self._forward_response_body(back)
        return False

    def _flush_back(self) -> bool:
        parts = self.to_back
        assert parts is not None
        self.to_back = None
        if not self._send_to_back(parts, total_length(parts)):
            return False
        self._sync_masks()
        if self.start < self.end:
            if self.phase == EXCHANGE and not self.request_done:
                self._forward_request_body()
            elif self.phase == PIPE:
                self._pipe(self.view[self.start : self.end], to_back=True)
                self.start = self.end = 0
        elif self.start == self.end:
            self.start = self.end = 0
        return False

    def _sync_masks(self) -> None:
        """Read a side only when the other side has no backlog; write when ours has one."""
        loop = self.loop
        front = (
            0 if self.to_back or self.front_full or self.starved & STARVED_FRONT else EPOLLIN
        ) | (EPOLLOUT if self.to_front else 0)
        if self.phase in (ANSWER, CLOSED):
            front = EPOLLIN | (EPOLLOUT if self.to_front else 0)
        if front != self.mask and self.phase != CLOSED:
            loop.modify(self.fd, front)
            self.mask = front
        back = self.back
        if back is not None:
            wanted = (0 if self.to_front or self.starved & STARVED_BACK else EPOLLIN) | (
                EPOLLOUT if self.to_back else 0
            )
            if self.phase == CONNECTING:
                wanted = EPOLLOUT
            if wanted != back.mask:
                loop.modify(back.fd, wanted)
                back.mask = wanted

    def _start_pipe(self, back: BackendConnection, response: ResponseHead) -> None:
        self.phase = PIPE
        self._no_delay()
        self.loop.counters.upgrades += 1
        self.response_started = self.loop.now
        self._record(101)
        self.loop.timers.arm(self, self.loop.now + self.listener.front_timeout)
        out = forward_response(response, self.context.id_header + self.request_id)
        parts: list[bytes | memoryview] = [out]
        if back.start < back.end:
            parts.append(back.view[back.start : back.end])
        back.start = back.end = 0
        if not self._send_to_front(parts, total_length(parts)):
            return
        if self.start < self.end:
            self._pipe(self.view[self.start : self.end], to_back=True)
            self.start = self.end = 0

    def _pipe(self, data: memoryview, to_back: bool) -> None:
        self.deadline = self.loop.now + self.listener.front_timeout
        if to_back:
            self._send_to_back([data], len(data))
        else:
            self._send_to_front([data], len(data))
