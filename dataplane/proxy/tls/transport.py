"""A client connection's TLS side: the non-blocking handshake, then a socket-like stream.

`TlsHandshake` owns an accepted connection until its handshake completes: it drives
`do_handshake()` on readiness (no thread, no blocking), closes silent clients at the
listener's `front_timeout`, and closes (quietly, at no cost to other connections) a client
that sends something other than a ClientHello or leaves mid-handshake. The SNI callback of the
listener records the certificate it served on the socket (`TlsSocket.served`), for strict SNI
binding. Once established, the connection becomes an `HttpsSession` reading and writing
through a `TlsStream`, which gives the HTTP engine the calls it makes on a plain socket. It
calls the C object under the `SSLSocket` (`_sslobj`: `read`, `write`, `pending`) directly,
as `SSLSocket.recv_into`/`send` do after their checks, saving three Python frames per call:

- `recv_into` drains what OpenSSL already decrypted (`pending()`), since those bytes will
  never raise an epoll event, and says in `drained` that none wait after it (only a read
  makes some: the session asks `pending()` again only when the view was filled); "want
  read/write" becomes `BlockingIOError`, close_notify and an EOF without it (ssl.py's
  `suppress_ragged_eofs`) 0.
- `sendmsg` does not exist on an SSL socket: small pieces are joined, large ones sent in
  turn. A write OpenSSL could not finish is retried later with the very same bytes (the
  engine keeps its unsent parts), which is what OpenSSL requires.
- `shutdown` and `close` send close_notify first, so a client reading to the end of the
  connection can tell a complete response from a cut one.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
from typing import TYPE_CHECKING, Protocol

from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures
    from dataplane.proxy.routing.client_auth import ClientAuthPolicy
    from dataplane.proxy.tls.listener import HttpsListener
    from dataplane.proxy.tls.store import StoredCertificate

log = logging.getLogger("dataplane.worker")

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
JOIN_LIMIT = 64 * 1024  # pieces smaller than this in all are joined into one TLS write
_WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
_CLOSED = (ssl.SSLZeroReturnError, ssl.SSLEOFError)  # close_notify, or EOF without it


class SslObject(Protocol):
    """The C-level `_ssl._SSLSocket` an `SSLSocket` wraps (its `_sslobj`)."""

    def read(self, size: int, buffer: memoryview | bytearray = ..., /) -> int: ...
    def write(self, data: bytes | memoryview, /) -> int: ...
    def pending(self) -> int: ...


class TlsSocket(ssl.SSLSocket):
    """An SSL socket remembering what the SNI callback chose for it."""

    _sslobj: SslObject | None  # set by SSLSocket; None once closed or unwrapped
    served: StoredCertificate | None = None  # the certificate of this connection
    client_auth: ClientAuthPolicy | None = None  # the client certificates it asked for
    server_name: str | None = None  # the SNI the client sent, normalised


class TlsStream:
    """The calls the HTTP engine makes on its client socket, over an established TLS one."""

    __slots__ = ("_obj", "_ssl", "drained")

    def __init__(self, tls: TlsSocket) -> None:
        self._ssl = tls
        obj = tls._sslobj
        if obj is None:
            raise ValueError("TLS stream over a closed or unwrapped SSL socket")
        self._obj: SslObject = obj
        # True: OpenSSL holds no decrypted byte (checked since the last read). False: it may.
        self.drained = False

    def fileno(self) -> int:
        return self._ssl.fileno()

    def pending(self) -> int:
        return self._obj.pending()

    def recv_into(self, view: memoryview) -> int:
        obj = self._obj
        size = len(view)
        try:
            received = obj.read(size, view)
            while received < size:
                if not received or not obj.pending():
                    self.drained = True
                    return received
                received += obj.read(size - received, view[received:])
        except _WANT:
            self.drained = True
            raise BlockingIOError from None
        except _CLOSED:
            return 0
        self.drained = False  # the view is full: more may wait inside OpenSSL
        return received

    def recv(self, size: int) -> bytes:
        """Read and return up to `size` bytes (a session discarding what a client sends)."""
        obj = self._obj
        buffer = bytearray(size)
        try:
            received = obj.read(size, buffer)
        except _WANT:
            self.drained = True
            raise BlockingIOError from None
        except _CLOSED:
            return b""
        self.drained = False
        return bytes(buffer[:received])

    def sendmsg(self, parts: list[bytes | memoryview]) -> int:
        if len(parts) == 1:
            data = parts[0]
        else:
            total = 0
            for part in parts:
                total += len(part)
            if total > JOIN_LIMIT:
                return self._send_each(parts)
            data = b"".join(parts)
        if not len(data):
            return 0
        try:
            return self._obj.write(data)
        except _WANT:
            raise BlockingIOError from None

    def _send_each(self, parts: list[bytes | memoryview]) -> int:
        """Large pieces one write each (no copy), as far as OpenSSL takes them."""
        write = self._obj.write
        sent = 0
        for piece in parts:
            if not len(piece):
                continue
            try:
                sent += write(piece)
            except _WANT:
                if sent:
                    return sent
                raise BlockingIOError from None
        return sent

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self._ssl.setsockopt(level, option, value)

    def _close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self._ssl.unwrap()  # sends close_notify; the peer's answer is not awaited

    def shutdown(self, how: int) -> None:
        self._close_notify()
        socket.socket.shutdown(self._ssl, how)

    def close(self) -> None:
        if self._ssl.fileno() >= 0 and getattr(self._ssl, "_sslobj", None) is not None:
            self._close_notify()
        self._ssl.close()


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
        peer: tuple[str, int],
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.peer = peer
        self.figures: ListenerFigures | None = None
        self.deadline = 0.0
        self.timer_slot = NOT_FILED
        context = context or listener.certificates.default_context
        self.tls: TlsSocket = context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )  # type: ignore[assignment]  # sslsocket_class is TlsSocket (tls/listener.py)
        self.fd = self.tls.fileno()
        self.mask = EPOLLIN
        loop.register(self.fd, self.on_event, EPOLLIN)
        loop.timers.arm(self, loop.now + listener.front_timeout)

    def on_event(self, mask: int) -> None:
        try:
            self.tls.do_handshake()
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
        loop.unregister(self.fd)
        loop.timers.cancel(self)
        loop.sessions.discard(self)
        session = self.listener.open_session(loop, self.tls, self.peer)
        if session is None:  # refused (HTTP/1.1 on a disable_http11 listener)
            self.fd = -1
            self.tls.close()
            loop.session_closed(self)
            return
        session.figures = self.figures
        loop.sessions.add(session)

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
