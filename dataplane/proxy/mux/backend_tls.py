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

import errno
import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

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


class ShutdownObject(Protocol):
    """OpenSSL's C object under a TLS socket (`_ssl._SSLSocket`), as closing it sees it."""

    def shutdown(self) -> object: ...


class TlsObject(ShutdownObject, Protocol):
    """The calls a backend connection makes on its C object."""

    def read(self, size: int, buffer: memoryview | bytearray = ..., /) -> Any: ...
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...
    def pending(self) -> int: ...
    def do_handshake(self) -> None: ...
    def getpeercert(self, binary_form: bool, /) -> Any: ...
    def selected_alpn_protocol(self) -> str | None: ...


class Polled(Protocol):
    """A backend connection as `handshake` sees it."""

    fd: int
    mask: int


class BackendTlsStream:
    """A backend connection's socket once TLS wraps it: OpenSSL's C object (`_ssl._SSLSocket`,
    what an `ssl.SSLSocket` keeps in `_sslobj`) made by the context's `_wrap_socket` on the
    TCP socket itself, as the client side of tls/transport.py's `TlsSocket`. The Python
    `SSLSocket` would cost a second socket object and system calls per connection (SO_TYPE,
    getpeername, the timeout set back and forth, and a getpeername before each handshake
    step while its connect is in progress)."""

    __slots__ = ("_obj", "_open", "_sock", "loop", "reader", "settings")

    def __init__(self, settings: BackendTlsContext, sock: socket.socket) -> None:
        self.settings = settings
        context = settings.context
        name = settings.server_name
        if context.check_hostname and not name:
            raise ValueError("check_hostname requires server_hostname")  # as SSLSocket says
        self._sock = sock  # the C object holds it by a weak reference only
        hostname = context._encode_hostname(name)  # type: ignore[attr-defined]  # IDNA
        self._obj: TlsObject = context._wrap_socket(  # type: ignore[attr-defined]
            sock, False, hostname, owner=None, session=None
        )
        self._open = True  # no close_notify sent yet
        self.loop: Host | None = None  # set while a read may leave decrypted bytes behind
        self.reader: Polled | None = None

    # -- what a plain socket offers --------------------------------------------------------

    def fileno(self) -> int:
        return self._sock.fileno()

    def connect_ex(self, address: tuple[str, int] | tuple[str, int, int, int]) -> int:
        return self._sock.connect_ex(address)

    def getsockopt(self, level: int, option: int) -> int:
        return self._sock.getsockopt(level, option)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self._sock.setsockopt(level, option, value)

    def pending(self) -> int:
        return self._obj.pending()

    def recv_into(self, view: memoryview) -> int:
        obj = self._obj
        size = len(view)
        try:
            received: int = obj.read(size, view)
            while received and received < size and obj.pending():
                received += obj.read(size - received, view[received:])
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # EOF without close_notify: as ssl.py
            return 0
        if received and obj.pending():
            self._later()
        return received

    def recv(self, size: int) -> bytes:
        try:
            data: bytes = self._obj.read(size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""
        if data and self._obj.pending():
            self._later()
        return data

    def send(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self._obj.write(data)
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
        if self._open:
            self._open = False
            close_notify(self._obj)
        self._sock.shutdown(how)

    def close(self) -> None:
        if self._open and self._sock.fileno() >= 0:
            self._open = False
            close_notify(self._obj)
        self._sock.close()

    # -- what BackendTlsContext.accepts reads after the handshake --------------------------

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._obj.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        return self._obj.selected_alpn_protocol()

    @property
    def _sslobj(self) -> TlsObject:
        return self._obj  # BackendTlsContext.accepts reads the verified chain from it

    # -- bytes OpenSSL holds ---------------------------------------------------------------

    def _later(self) -> None:
        if self.loop is not None:
            self.loop.flush_soon(self)

    def flush(self) -> None:
        """After a turn where a read left decrypted bytes in OpenSSL: read them, through the
        connection's handler, if it reads now; else look again after the next turn."""
        loop, reader = self.loop, self.reader
        if loop is None or reader is None or self._sock.fileno() < 0 or not self._obj.pending():
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
            self._obj.read(1)
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
            self._obj.do_handshake()
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
            refused = self.settings.accepts(self)  # type: ignore[arg-type]  # SSLSocket-like
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


# -- closing a TLS socket, ours to a backend or a client's (tls/transport.py) --------------


def close_notify(obj: ShutdownObject) -> None:
    """Send close_notify, so the peer reading to the end can tell a complete message from a
    cut one; its answer is not awaited (OpenSSL's "want read" for it is the usual outcome on
    a non-blocking socket: a plain try, cheaper than `contextlib.suppress`, once per
    connection)."""
    try:  # noqa: SIM105  # contextlib.suppress costs two Python calls more
        obj.shutdown()
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        pass
