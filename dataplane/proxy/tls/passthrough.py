"""TLS passthrough on an HTTPS listener: connections routed by SNI, still encrypted.

A passthrough frontend (`passthrough = true`, docs/tls-passthrough.md) names a hostname
(exact, or `*.domain` for one more label) and a cluster. On a listener holding at least one,
each accepted connection (after its PROXY header, on an `expect_proxy` listener) is first a
`SniPeek`: it looks at the client's first bytes with `MSG_PEEK` (nothing is consumed) until
the ClientHello's server name is known (`client_hello.py`), at most `PEEK_LIMIT` bytes and
the listener's `front_timeout`. Then:

- a passthrough hostname: the connection becomes a `TcpSession` (tcp/session.py) towards the
  frontend's cluster: the ClientHello, still in the kernel's buffer, is the first thing its
  backend reads; bounded buffers, half-close, connect retries, metrics and TCP access logs
  are the TCP proxy's;
- anything else (another name, no SNI, not TLS, the bound reached): the usual `TlsHandshake`,
  which reads the very bytes that were peeked.

Listeners without a passthrough or `client_auth` frontend never create a `SniPeek`
(tls_acceptor checks `PassthroughRoutes.active` and `ClientAuthIndex.active`); the name found
is handed to the handshake, which asks for a client certificate when it has `client_auth`
(tls/client_auth.py). The socket is registered edge-triggered while peeking: bytes
already seen raise no event again, so a ClientHello arriving in pieces costs one event each.
"""

from __future__ import annotations

import logging
import select
import socket
from typing import TYPE_CHECKING

from dataplane.proxy.tcp.session import TcpSession
from dataplane.proxy.timers import NOT_FILED
from dataplane.proxy.tls.client_hello import server_name

if TYPE_CHECKING:
    from dataplane.command.messages import RequestHttpFrontend
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures
    from dataplane.proxy.proxy_protocol.header import Peer
    from dataplane.proxy.tls.listener import HttpsListener

log = logging.getLogger("dataplane.worker")

PEEK_LIMIT = 32 * 1024  # bytes looked at for a ClientHello (real ones: under 4 KiB)
_EDGE_IN = select.EPOLLIN | select.EPOLLET


class PassthroughRoute:
    """What a `TcpSession` needs of its listener, for one passthrough frontend."""

    __slots__ = ("cluster_id", "config", "listener", "tags")

    def __init__(self, listener: HttpsListener, front: RequestHttpFrontend) -> None:
        self.listener = listener
        self.config = listener.config  # `.address`, for logs
        self.cluster_id: str | None = front.cluster_id
        self.tags = dict(front.tags)

    # The listener's timeouts, read when used: an `update_https_listener` reaches them.
    @property
    def front_timeout(self) -> float:
        return self.listener.front_timeout

    @property
    def back_timeout(self) -> float:
        return self.listener.back_timeout

    @property
    def connect_timeout(self) -> float:
        return self.listener.connect_timeout


class PassthroughRoutes:
    """The passthrough frontends of one HTTPS listener, by hostname."""

    __slots__ = ("exact", "wildcard")

    def __init__(self) -> None:
        self.exact: dict[str, PassthroughRoute] = {}
        self.wildcard: dict[str, PassthroughRoute] = {}  # "*.example.com" under "example.com"

    @property
    def active(self) -> bool:
        return bool(self.exact or self.wildcard)

    def add(self, listener: HttpsListener, front: RequestHttpFrontend) -> None:
        name = front.hostname.lower().removesuffix(".")
        route = PassthroughRoute(listener, front)
        if name.startswith("*."):
            self.wildcard[name[2:]] = route
        else:
            self.exact[name] = route

    def remove(self, front: RequestHttpFrontend) -> None:
        name = front.hostname.lower().removesuffix(".")
        if name.startswith("*."):
            self.wildcard.pop(name[2:], None)
        else:
            self.exact.pop(name, None)

    def match(self, name: str) -> PassthroughRoute | None:
        """The route of an SNI (already lowercased): exact first, then `*.` one label up."""
        if not name:
            return None
        route = self.exact.get(name)
        if route is None and self.wildcard:
            _, dot, parent = name.partition(".")
            if dot and parent:
                route = self.wildcard.get(parent)
        return route


class SniPeek:
    """An accepted connection of a passthrough listener until its server name is known."""

    __slots__ = ("deadline", "fd", "figures", "listener", "loop", "peer", "sock", "timer_slot")

    def __init__(
        self,
        loop: Host,
        listener: HttpsListener,
        sock: socket.socket,
        peer: Peer,
        figures: ListenerFigures | None,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.sock = sock
        self.peer = peer
        self.figures = figures
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        self.fd = sock.fileno()
        loop.register(self.fd, self.on_event, _EDGE_IN)
        loop.timers.arm(self, loop.now + listener.front_timeout)

    def on_event(self, mask: int) -> None:
        try:
            data = self.sock.recv(PEEK_LIMIT, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:  # the client left before saying anything
            self.close()
            return
        name = server_name(data)
        if name is None and len(data) < PEEK_LIMIT:
            return  # more to come: the next bytes raise the next (edge) event
        self._hand_on(name or "")

    def _hand_on(self, name: str) -> None:
        loop = self.loop
        loop.unregister(self.fd)
        loop.timers.cancel(self)
        loop.sessions.discard(self)
        self.fd = -1
        listener = self.listener
        route = listener.passthrough.match(name)
        if route is not None:
            listener.passthrough_connections += 1
            session = TcpSession(loop, route, self.sock, self.peer, self.figures)
            loop.sessions.add(session)
            session.start()
            return
        listener.start_handshake(loop, self.sock, self.peer, self.figures, name)

    def on_timeout(self, now: float) -> None:
        self.listener.handshake_timeouts += 1
        self.close()

    def soft_stop(self) -> None:
        self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        loop = self.loop
        loop.unregister(self.fd)
        self.fd = -1
        loop.timers.cancel(self)
        self.sock.close()
        loop.session_closed(self)
