"""An HTTP session over TLS: what an `HttpSession` needs more when its socket is a TLS one.

OpenSSL may hold decrypted bytes (`pending()`) that no epoll event will ever announce: they
are read at once after each readiness event, and a session resuming its reads while some wait
asks for EPOLLOUT once (which fires at once) to be called back. `pending()` is asked only when
the stream's last read filled its view (`TlsStream.drained` false): a read that did not had
already found none. Strict SNI binding is checked by the request side through `sni_binding`
(None: not enforced).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import CLOSED, EPOLLIN, EPOLLOUT

if TYPE_CHECKING:
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.proxy_protocol.header import Peer
    from dataplane.proxy.routing.client_auth import SniCheck
    from dataplane.proxy.tls.listener import HttpsListener
    from dataplane.proxy.tls.stream import TlsStream

MAX_PENDING_READS: Final = 16  # TLS records drained per readiness event before yielding


class HttpsSession(HttpSession):
    """An HTTP session over TLS: drains what OpenSSL decrypted ahead of the epoll events."""

    __slots__ = ()

    def __init__(
        self,
        loop: Host,
        listener: HttpsListener,
        stream: TlsStream,
        peer: Peer,
        binding: SniCheck | None,
    ) -> None:
        super().__init__(loop, listener, stream, peer)
        self.sni_binding = binding

    def on_front(self, events: int) -> None:
        super().on_front(events)
        stream: TlsStream = self.sock  # type: ignore[assignment]
        for _ in range(MAX_PENDING_READS):
            if stream.drained or self.phase == CLOSED or not self.mask & EPOLLIN:
                break
            if not stream.pending():
                stream.drained = True
                break
            self._read_front()
        if self.phase != CLOSED and self.mask & EPOLLOUT and self.to_front is None:
            self._sync_masks()  # the read nudge (below) has done its job

    def _sync_masks(self) -> None:
        super()._sync_masks()
        mask = self.mask
        # Decrypted bytes waiting inside OpenSSL raise no epoll event: ask for writability
        # once, which fires at once and lets on_front read them.
        reading = self.phase != CLOSED and mask & EPOLLIN and not mask & EPOLLOUT
        stream: TlsStream = self.sock  # type: ignore[assignment]
        if reading and not stream.drained and stream.pending():
            self.mask = mask | EPOLLOUT
            self.loop.modify(self.fd, self.mask)
