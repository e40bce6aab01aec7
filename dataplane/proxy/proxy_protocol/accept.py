"""Accepting on an `expect_proxy` listener: the PROXY header is read before anything else.

A `ProxyHeaderReader` owns an accepted connection until its PROXY protocol header
(`proxy_protocol/header.py`) is complete, then hands the socket and the client address the header
carries (the connection's own peer for LOCAL, UNSPEC or UNKNOWN headers) to what the listener
starts next: an `HttpSession` on HTTP listeners, a `TlsHandshake` on HTTPS ones (the PROXY
header comes before the TLS ClientHello). That stage never learns the real peer: the address it
gets is the client address everywhere (forwarding headers, `trusted_proxies`, the per-IP
limit, access logs), and the header's destination, riding along on it (`ProxiedPeer`), is the
public address (`X-Forwarded-Port`, `Forwarded: by`), as in sozu.

Bytes are looked at with `MSG_PEEK` and only the header's own bytes are consumed, so the
request (or ClientHello) sent in the same segment stays in the socket for the next stage. An
incomplete header's bytes are all header bytes: they are consumed, so a level-triggered epoll
does not report them again. Most headers are read whole right at accept (a load balancer
sends it first thing), and those connections never touch the epoll set or the timer wheel.

A connection whose first bytes are not a PROXY header, whose header is malformed or above
`MAX_V2_HEADER`, that closes before finishing it, or that has not finished it within the
listener's `request_timeout` of the accept, is closed: nothing reaches a backend. Each outcome
is counted (`ProxyProtocolFigures`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.proxy.mux.session_fields import EPOLLIN
from dataplane.proxy.proxy_protocol.header import (
    MAX_HEADER,
    Peer,
    ProxyProtocolError,
    parse_header,
)
from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.proxy.listener import HttpListener
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures

log = logging.getLogger("dataplane.worker")

# What a listener starts once the header is read: (socket, client address, listener figures).
Next = Callable[[socket.socket, Peer, "ListenerFigures | None"], None]


def accept_proxied(loop: Host, listener: HttpListener, start: Next, nodelay: bool = False) -> None:
    """The accept handler's work on an `expect_proxy` listener: read each connection's
    header (most are already there) before `start` gets it."""
    sessions = loop.sessions
    figures = loop.metrics.listener(str(listener.config.address))
    for sock, peer in listener.accept_batch(loop.max_connections - len(sessions), nodelay):
        loop.counters.accepted += 1
        figures.opened()
        reader = ProxyHeaderReader(loop, listener, sock, peer, start)
        reader.figures = figures
        sessions.add(reader)
        reader.on_event(EPOLLIN)
    if len(sessions) >= loop.max_connections:
        loop.pause_accept()  # the rest waits in the kernel's backlog


class ProxyHeaderReader:
    """An accepted connection until its PROXY header is read (or refused, or too slow)."""

    __slots__ = (
        "deadline",
        "fd",
        "figures",
        "listener",
        "loop",
        "peer",
        "received",
        "registered",
        "sock",
        "start",
        "timer_slot",
    )

    def __init__(
        self,
        loop: Host,
        listener: HttpListener,
        sock: socket.socket,
        peer: Peer,
        start: Next,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.start = start
        self.figures: ListenerFigures | None = None
        self.received = b""  # the header's bytes consumed so far
        self.registered = False
        self.deadline = 0.0
        self.timer_slot = NOT_FILED

    def on_event(self, mask: int) -> None:
        received = self.received
        try:
            data = self.sock.recv(MAX_HEADER - len(received), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            self._wait()
            return
        except OSError:
            self._refuse("connection error", empty=not received)
            return
        if not data:
            self._refuse("closed before the end of the header", empty=not received)
            return
        seen = received + data
        try:
            header = parse_header(seen)
        except ProxyProtocolError as error:
            self._refuse(str(error))
            return
        if header is None:  # every byte seen is the header's: take them, wait for more
            self.sock.recv(len(data))
            self.received = seen
            self._wait()
            return
        if header.length > len(received):
            self.sock.recv(header.length - len(received))  # peeked: they are there
        figures = self.loop.proxy_protocol
        figures.headers += 1
        if header.source is None:
            figures.local += 1
        self._hand_on(header.peer(self.peer))

    def _wait(self) -> None:
        if not self.registered:
            self.registered = True
            loop = self.loop
            loop.register(self.fd, self.on_event, EPOLLIN)
            loop.timers.arm(self, loop.now + self.listener.request_timeout)

    def _hand_on(self, peer: Peer) -> None:
        loop = self.loop
        if self.registered:
            loop.unregister(self.fd)
            loop.timers.cancel(self)
        loop.sessions.discard(self)
        self.fd = -1
        self.start(self.sock, peer, self.figures)

    def _refuse(self, reason: str, empty: bool = False) -> None:
        figures = self.loop.proxy_protocol
        if empty:
            figures.empty += 1
        else:
            figures.errors += 1
            log.debug("PROXY header from %s refused: %s", self.peer[0], reason)
        self.close()

    def on_timeout(self, now: float) -> None:
        self.loop.proxy_protocol.timeouts += 1
        log.debug("PROXY header from %s: not complete in time", self.peer[0])
        self.close()

    def soft_stop(self) -> None:
        self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        loop = self.loop
        if self.registered:
            loop.forget(self.fd)  # closing the socket takes it out of the epoll set
            loop.timers.cancel(self)
        self.fd = -1
        self.sock.close()
        loop.session_closed(self)
