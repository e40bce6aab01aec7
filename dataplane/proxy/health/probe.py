"""One health probe of one backend: a non-blocking connect, then (HTTP) the request and the
answer's status line; or (UDP) one datagram and its reply. The result goes to `done(passed)`
once, then the socket is closed.

A TCP probe passes when the connect succeeds. An HTTP probe sends `verdict.http_request` and
passes when the status line passes (`verdict.HttpAnswer`). Anything else fails: refused,
reset, an answer that is not HTTP, the backend closing first, or no result within the
timeout (the loop's timer wheel calls `on_timeout`). A UDP probe (`UdpProbe`, sozu's
UDP_PROBE) sends its payload on a connected UDP socket and passes on any reply; a refusal
(ICMP port unreachable, reported as ECONNREFUSED) or silence until the timeout fails.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.proxy.health.verdict import HttpAnswer
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.command.address import SocketAddress
    from dataplane.proxy.mux.host import Host

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
READ_SIZE = 4096


class _Probe:
    """What every probe shares: its socket on the loop, its timer, its one result."""

    __slots__ = ("deadline", "done", "fd", "loop", "sock", "timer_slot")

    loop: Host
    sock: socket.socket
    fd: int
    done: Callable[[bool], None] | None
    deadline: float
    timer_slot: float

    @property
    def running(self) -> bool:
        return self.done is not None

    def on_timeout(self, now: float) -> None:
        self.finish(False)

    def close(self) -> None:
        """Cancel without a result (the check was removed, the worker stops)."""
        self.done = None
        self._release()

    def finish(self, passed: bool) -> None:
        done, self.done = self.done, None
        self._release()
        if done is not None:
            done(passed)

    def _release(self) -> None:
        self.loop.timers.cancel(self)
        if self.fd >= 0:
            self.loop.forget(self.fd)
            with contextlib.suppress(OSError):
                self.sock.close()
            self.fd = -1


class Probe(_Probe):
    """A TCP connect probe (`request` None), or an HTTP one."""

    __slots__ = ("answer", "request")

    def __init__(
        self,
        loop: Host,
        address: SocketAddress,
        request: bytes | None,
        expected_status: int,
        timeout: float,
        done: Callable[[bool], None],
    ) -> None:
        self.loop = loop
        self.request = request  # None: a TCP connect check
        self.answer = HttpAnswer(expected_status)
        self.done = done
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        code = self.sock.connect_ex(address.sockaddr())
        if code not in (0, errno.EINPROGRESS):
            self.sock.close()
            self.fd = -1
            self.finish(False)
            return
        loop.register(self.fd, self.on_event, EPOLLOUT)
        loop.timers.arm(self, loop.now + timeout)

    def on_event(self, events: int) -> None:
        sock = self.sock
        if events & EPOLLOUT:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.finish(False)
                return
            if self.request is None:
                self.finish(True)  # TCP check: connected is healthy
                return
            try:
                sock.send(self.request)  # a few hundred bytes: one send on a new connection
            except OSError:
                self.finish(False)
                return
            self.loop.modify(self.fd, EPOLLIN)
            return
        try:
            chunk = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.finish(False)
            return
        if not chunk:
            self.finish(self.answer.ended())
            return
        passed = self.answer.feed(chunk)
        if passed is not None:
            self.finish(passed)


class UdpProbe(_Probe):
    """sozu's UDP_PROBE: `payload` to the backend, any reply within the timeout passes."""

    __slots__ = ()

    def __init__(
        self,
        loop: Host,
        address: SocketAddress,
        payload: bytes,
        timeout: float,
        done: Callable[[bool], None],
    ) -> None:
        self.loop = loop
        self.done = done
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.fd = self.sock.fileno()
        try:
            self.sock.setblocking(False)
            self.sock.connect(address.sockaddr())
            self.sock.send(payload)
        except OSError:
            self.sock.close()
            self.fd = -1
            self.finish(False)
            return
        loop.register(self.fd, self.on_event, EPOLLIN)
        loop.timers.arm(self, loop.now + timeout)

    def on_event(self, events: int) -> None:
        try:
            self.sock.recv(1)  # the reply's content does not matter (the rest is discarded)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.finish(False)  # ECONNREFUSED: the backend's port is closed
            return
        self.finish(True)
