"""What the loop registers for an active TCP listener's socket: each accepted connection
starts a TcpSession (after its PROXY header on an `expect_proxy` listener), counted against the
worker's `max_connections` with the HTTP sessions."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.proxy.proxy_protocol.accept import accept_proxied
from dataplane.proxy.tcp.session import TcpSession

if TYPE_CHECKING:
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures
    from dataplane.proxy.tcp.listener import TcpListener


def accept_handler(loop: Host, listener: TcpListener) -> Callable[[int], None]:
    """The accept handler of an active TCP listener: each connection starts a TcpSession."""

    def open_session(
        sock: socket.socket, peer: tuple[str, int], figures: ListenerFigures | None
    ) -> None:
        session = TcpSession(loop, listener, sock, peer, figures)
        loop.sessions.add(session)
        session.start()

    def on_accept(mask: int) -> None:
        if listener.expect_proxy:
            accept_proxied(loop, listener, open_session, nodelay=True)  # type: ignore[arg-type]
            return
        counters = loop.counters
        sessions = loop.sessions
        figures = loop.metrics.listener(str(listener.config.address))
        for sock, peer in listener.accept_batch(loop.max_connections - len(sessions)):
            counters.accepted += 1
            figures.opened()
            session = TcpSession(loop, listener, sock, peer, figures)
            sessions.add(session)
            session.start()
        if len(sessions) >= loop.max_connections:
            loop.pause_accept()  # the rest waits in the kernel's backlog

    return on_accept
