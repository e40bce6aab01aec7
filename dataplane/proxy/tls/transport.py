"""A client connection's TLS side: the non-blocking handshake, then a socket-like stream.

`TlsHandshake` owns an accepted connection until its handshake completes: it drives
`do_handshake()` on readiness (no thread, no blocking), closes silent clients at the
listener's `front_timeout`, and closes (quietly, at no cost to other connections) a client
that sends something other than a ClientHello or leaves mid-handshake. The SNI callback of the
listener records the certificate it served on the socket (`TlsSocket.served`), for strict SNI
binding. Once established, the connection becomes an `HttpsSession` reading and writing
through a `TlsStream` (tls/stream.py, compiled in the compiled build).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from typing import TYPE_CHECKING, Any

from dataplane.proxy.mux.backend_tls import close_notify
from dataplane.proxy.mux.h2_session import H2Session
from dataplane.proxy.timers import NOT_FILED
from dataplane.proxy.tls.stream import JOIN_LIMIT, SslObject, TlsStream

if TYPE_CHECKING:
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures
    from dataplane.proxy.proxy_protocol.header import Peer
    from dataplane.proxy.routing.client_auth import ClientAuthPolicy
    from dataplane.proxy.tls.listener import HttpsListener
    from dataplane.proxy.tls.store import StoredCertificate

log = logging.getLogger("dataplane.worker")

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
__all__ = ["JOIN_LIMIT", "TlsHandshake", "TlsSocket", "TlsStream"]


class TlsSocket:
    """A server-side TLS connection: the accepted socket and OpenSSL's object over it.

    The C object (`_ssl._SSLSocket`, what an `ssl.SSLSocket` keeps in `_sslobj`) is made by the
    context's `_wrap_socket` directly, with this object as its owner (what the SNI callback
    receives, to record its choice here). `SSLContext.wrap_socket` would build a Python
    `SSLSocket` around it first: a second socket object over the descriptor, and three system
    calls (getsockopt SO_TYPE, getpeername, the timeout set back) per connection, which an
    accepted, non-blocking, connected TCP socket does not need."""

    __slots__ = ("__weakref__", "_sslobj", "client_auth", "served", "server_name", "sock")

    def __init__(self, context: ssl.SSLContext, sock: socket.socket) -> None:
        self.sock = sock  # the C object holds it by a weak reference only
        self.served: StoredCertificate | None = None  # the certificate of this connection
        self.client_auth: ClientAuthPolicy | None = None  # the client certificates it asked for
        self.server_name: str | None = None  # the SNI the client sent, normalised
        # None once closed
        self._sslobj: SslObject | None = context._wrap_socket(  # type: ignore[attr-defined]
            sock, True, None, owner=self
        )

    def fileno(self) -> int:
        return self.sock.fileno()

    def selected_alpn_protocol(self) -> str | None:
        obj = self._sslobj
        return obj.selected_alpn_protocol() if obj is not None else None

    def getpeercert(self, binary_form: bool = False) -> Any:
        obj = self._sslobj
        return obj.getpeercert(binary_form) if obj is not None else None

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.sock.setsockopt(level, option, value)

    def shutdown(self, how: int) -> None:
        """close_notify, then the TCP shutdown."""
        obj, self._sslobj = self._sslobj, None
        if obj is not None:
            close_notify(obj)
        self.sock.shutdown(how)

    def close(self) -> None:
        """close_notify (unless sent already), then the descriptor closed."""
        obj, self._sslobj = self._sslobj, None
        if obj is not None and self.sock.fileno() >= 0:
            close_notify(obj)
        self.sock.close()


class TlsHandshake:
    """An accepted TLS connection until its handshake completes (or fails, or times out)."""

    __slots__ = (
        "deadline",
        "fd",
        "figures",
        "listener",
        "loop",
        "mask",
        "peer",
        "timer_slot",
        "tls",
    )

    def __init__(
        self,
        loop: Host,
        listener: HttpsListener,
        sock: socket.socket,
        peer: Peer,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.peer = peer
        self.figures: ListenerFigures | None = None
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        context = context or listener.certificates.default_context
        self.tls = TlsSocket(context, sock)
        self.fd = sock.fileno()
        self.mask = EPOLLIN
        loop.register(self.fd, self.on_event, EPOLLIN)
        loop.timers.arm(self, loop.now + listener.front_timeout)

    def on_event(self, mask: int) -> None:
        obj = self.tls._sslobj
        if obj is None:  # closed under us: nothing to drive
            self.close()
            return
        try:
            # SSLSocket.do_handshake would check the connection, read the timeout and set it
            # back (fcntl, twice) around this very call: a non-blocking accepted socket
            # needs none of it
            obj.do_handshake()
        except ssl.SSLWantReadError:
            self._want(EPOLLIN)
            return
        except ssl.SSLWantWriteError:
            self._want(EPOLLOUT)
            return
        except (ssl.SSLError, OSError) as error:  # not TLS, refused, or gone: only this one
            self.listener.handshake_failures += 1
            if isinstance(error, ssl.SSLCertVerificationError):  # a client certificate
                self.listener.client_cert_refused += 1
                log.info("client certificate of %s refused: %s", self.peer[0], error)
            log.debug("TLS handshake with %s failed: %s", self.peer[0], error)
            self.close()
            return
        self._established()

    def _want(self, mask: int) -> None:
        if mask != self.mask:
            self.loop.modify(self.fd, mask)
            self.mask = mask

    def _established(self) -> None:
        loop = self.loop
        fd = self.fd
        # the session registers the same descriptor: it stays in the epoll set meanwhile
        # (an epoll_ctl DEL and ADD saved per connection)
        loop.hand_over(fd, self.mask)
        loop.timers.cancel(self)
        loop.sessions.discard(self)
        try:
            session = self.listener.open_session(loop, self.tls, self.peer)
            if session is not None:
                session.figures = self.figures
                loop.sessions.add(session)
                if isinstance(session, H2Session):
                    session.start()  # registers (inside the hand-over), may read or close
        finally:
            loop.end_hand_over(fd)
        if session is None:  # refused (HTTP/1.1 on a disable_http11 listener)
            self.fd = -1
            self.tls.close()
            loop.session_closed(self)

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
        self.tls.close()
        loop.session_closed(self)
