"""TLS to a cluster's backends: the socket of a backend connection, and its handshake.

The front side's approach (tls/transport.py), client side: the connection's TCP socket is
wrapped by the cluster's one SSLContext (`ClusterRuntime.backend_tls`, built per cluster
configuration) with `do_handshake_on_connect=False`, connects without blocking, and once the
TCP connect completes `handshake` drives `do_handshake()` on readiness, changing the
connection's epoll mask to what OpenSSL wants. The connection stays in its connecting phase
all along, so the handshake counts against the connect timeout, and a failed handshake or
verification is a failed connect (another backend is tried, the circuit breaker counts it),
logged at the error level with the backend's name and counted (`backend.tls.errors`).

`BackendTlsStream` then gives the HTTP/1.1 and HTTP/2 backend code the calls they make on a
plain socket ("want read/write" becomes `BlockingIOError`, close_notify 0). Bytes OpenSSL
decrypted ahead of a read that filled its buffer raise no epoll event: the stream asks the
loop to call the connection's handler once more after this turn (`flush`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from dataplane.command.lazy_import import lazy_module
from dataplane.proxy.mux.session_fields import EPOLLIN, EPOLLOUT

if TYPE_CHECKING:
    import ssl
else:  # OpenSSL (4.8 MB of memory) loads on first use: command/lazy_import.py
    ssl = lazy_module("ssl", globals())

if TYPE_CHECKING:
    from dataplane.command.backend_tls import BackendTlsContext
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.mux.host import Host

log = logging.getLogger("dataplane.worker")

JOIN_LIMIT = 64 * 1024  # pieces smaller than this in all are joined into one TLS write
HANDSHAKING = errno.EINPROGRESS  # `handshake`'s answer while OpenSSL waits for the backend


class Polled(Protocol):
    """A backend connection as `handshake` sees it."""

    fd: int
    mask: int


class BackendTlsStream:
    """A backend connection's socket once TLS wraps it."""

    __slots__ = ("_ssl", "loop", "reader", "settings")

    def __init__(self, settings: BackendTlsContext, sock: socket.socket) -> None:
        self.settings = settings
        self._ssl = settings.context.wrap_socket(
            sock, server_hostname=settings.server_name, do_handshake_on_connect=False
        )
        self.loop: Host | None = None  # set while a read may leave decrypted bytes behind
        self.reader: Polled | None = None

    # -- what a plain socket offers --------------------------------------------------------

    def fileno(self) -> int:
        return self._ssl.fileno()

    def connect_ex(self, address: tuple[str, int] | tuple[str, int, int, int]) -> int:
        return self._ssl.connect_ex(address)

    def getsockopt(self, level: int, option: int) -> int:
        return self._ssl.getsockopt(level, option)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self._ssl.setsockopt(level, option, value)

    def pending(self) -> int:
        return self._ssl.pending()

    def recv_into(self, view: memoryview) -> int:
        tls = self._ssl
        try:
            received = tls.recv_into(view)
            while received and received < len(view) and tls.pending():
                received += tls.recv_into(view[received:])
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except ssl.SSLZeroReturnError:
            return 0
        if received and tls.pending():
            self._later()
        return received

    def recv(self, size: int) -> bytes:
        try:
            data = self._ssl.recv(size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except ssl.SSLZeroReturnError:
            return b""
        if data and self._ssl.pending():
            self._later()
        return data

    def send(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self._ssl.send(data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None

    def sendmsg(self, parts: Sequence[bytes | memoryview]) -> int:
        pieces = [part for part in parts if len(part)]
        if not pieces:
            return 0
        if len(pieces) == 1:
            return self.send(pieces[0])
        if sum(map(len, pieces)) <= JOIN_LIMIT:
            return self.send(b"".join(pieces))
        sent = 0
        for piece in pieces:
            try:
                done = self.send(piece)
            except BlockingIOError:
                if sent:
                    return sent
                raise
            sent += done
            if done < len(piece):
                break
        return sent

    def shutdown(self, how: int) -> None:
        shutdown_tls(self._ssl, how)

    def close(self) -> None:
        close_tls(self._ssl)

    # -- bytes OpenSSL holds ---------------------------------------------------------------

    def _later(self) -> None:
        if self.loop is not None:
            self.loop.flush_soon(self)

    def flush(self) -> None:
        """After a turn where a read left decrypted bytes in OpenSSL: read them, through the
        connection's handler, if it reads now; else look again after the next turn."""
        loop, reader = self.loop, self.reader
        if loop is None or reader is None or self._ssl.fileno() < 0 or not self._ssl.pending():
            return
        handler = loop.handlers.get(reader.fd)
        if handler is None:
            return
        if reader.mask & EPOLLIN:
            handler(EPOLLIN)
        else:
            loop.flush_soon(self)

    # -- the handshake ---------------------------------------------------------------------

    def idle_usable(self) -> bool:
        """A pooled connection became readable: a TLS 1.3 session ticket (consumed here)
        leaves it usable; application bytes or a close do not."""
        try:
            self._ssl.recv(1)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        except (ssl.SSLError, OSError):
            return False
        return False  # bytes out of turn, or the end of the connection

    def handshake(self, loop: Host, conn: Polled, cluster_id: str, backend: Backend) -> int:
        """One step, once TCP is connected: 0 when established (and accepted), HANDSHAKING
        while OpenSSL waits (the connection's mask is set for it), else ECONNABORTED (logged
        and counted: the caller treats it as a failed connect)."""
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            _want(loop, conn, EPOLLIN)
            return HANDSHAKING
        except ssl.SSLWantWriteError:
            _want(loop, conn, EPOLLOUT)
            return HANDSHAKING
        except ssl.SSLCertVerificationError as error:
            reason = f"certificate verification failed: {error.verify_message}"
        except (ssl.SSLError, OSError) as error:
            reason = str(getattr(error, "reason", None) or error)
        else:
            refused = self.settings.accepts(self._ssl)
            if refused is None:
                self.loop = loop
                self.reader = conn
                return 0
            reason = refused
        loop.metrics.cluster(cluster_id).tls_failed(backend.backend_id)
        log.error(
            "cluster %s: TLS with backend %s at %s failed: %s",
            cluster_id,
            backend.backend_id,
            backend.address,
            reason,
        )
        return errno.ECONNABORTED


def _want(loop: Host, conn: Polled, mask: int) -> None:
    if conn.mask != mask:
        loop.modify(conn.fd, mask)
        conn.mask = mask


def tls_step(
    loop: Host, conn: Polled, sock: object, cluster_id: str, backend: Backend, error: int
) -> int:
    """What a connecting connection's readiness means: the TCP connect's `error`, else the
    next handshake step when `sock` is a TLS one (0: ready for requests)."""
    if error or not isinstance(sock, BackendTlsStream):
        return error
    return sock.handshake(loop, conn, cluster_id, backend)


# -- closing a TLS socket, ours to a backend or a client's (tls/stream.py) -----------------


def close_notify(sock: ssl.SSLSocket) -> None:
    """Send close_notify, so the peer reading to the end can tell a complete message from a
    cut one; its answer is not awaited."""
    with contextlib.suppress(ssl.SSLError, OSError, ValueError):
        sock.unwrap()


def shutdown_tls(sock: ssl.SSLSocket, how: int) -> None:
    close_notify(sock)
    socket.socket.shutdown(sock, how)


def close_tls(sock: ssl.SSLSocket) -> None:
    if sock.fileno() >= 0 and getattr(sock, "_sslobj", None) is not None:
        close_notify(sock)
    sock.close()
