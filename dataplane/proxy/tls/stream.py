"""An established TLS connection as the HTTP engine's client socket (`TlsStream`).

It gives an `HttpsSession` (or an `H2Session`) the calls it makes on a plain socket, and
calls the C object under the `SSLSocket` (`_sslobj`: `read`, `write`, `pending`) directly, as
`SSLSocket.recv_into`/`send` do after their checks, saving three Python frames per call:

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

Imported only once an HTTPS listener exists (ssl loads OpenSSL); compiled by mypyc in the
compiled build, with tls/session.py.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Final, Protocol

from dataplane.proxy.mux.session_flow import total_length

if TYPE_CHECKING:
    from dataplane.proxy.tls.transport import TlsSocket

JOIN_LIMIT: Final = 64 * 1024  # pieces smaller than this in all are joined into one TLS write
_WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
_CLOSED = (ssl.SSLZeroReturnError, ssl.SSLEOFError)  # close_notify, or EOF without it


class SslObject(Protocol):
    """The C-level `_ssl._SSLSocket` an `SSLSocket` wraps (its `_sslobj`)."""

    def read(self, size: int, buffer: memoryview | bytearray = ..., /) -> int: ...
    def write(self, data: bytes | memoryview, /) -> int: ...
    def pending(self) -> int: ...
    def do_handshake(self) -> None: ...
    def shutdown(self) -> object: ...
    def selected_alpn_protocol(self) -> str | None: ...
    def getpeercert(self, binary_form: bool, /) -> Any: ...

    context: ssl.SSLContext  # settable: the SNI callback swaps in the certificate's context


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

    def send(self, data: bytes | memoryview) -> int:
        if not len(data):
            return 0
        try:
            return self._obj.write(data)
        except _WANT:
            raise BlockingIOError from None

    def sendmsg(self, parts: list[bytes | memoryview]) -> int:
        if len(parts) == 1:
            return self.send(parts[0])
        if total_length(parts) > JOIN_LIMIT:
            return self._send_each(parts)
        return self.send(b"".join(parts))

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

    def shutdown(self, how: int) -> None:
        self._ssl.shutdown(how)

    def close(self) -> None:
        self._ssl.close()
