"""A TCP listener in a worker: its socket, timeouts and the one cluster its frontend names.

As in sozu, a TCP listener serves at most one cluster (`add_tcp_frontend` names it); a
connection accepted while it has none is closed at once. The socket comes from main over SCM
(the `tcp` group), or is bound here when main sent none, like an HTTP listener's. Accepting
counts against the worker's `max_connections` together with the HTTP sessions (`loop.sessions`),
and stops during a soft stop.

`TcpListeners` mirrors the state requests about TCP listeners and frontends (`clusters.py` calls
it); the accept handler the loop registers for an active listener's socket is in accept.py.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from dataplane.command.address import SocketAddress
from dataplane.command.listener_update import merge_listener_update
from dataplane.command.messages import (
    RequestTcpFrontend,
    TcpListenerConfig,
    UpdateTcpListenerConfig,
)
from dataplane.proxy.listener import accept_batch

if TYPE_CHECKING:
    pass

log = logging.getLogger("dataplane.worker")


class TcpListener:
    """One TCP listener's settings and its cluster; its socket while active."""

    scheme = "tcp"

    def __init__(self, config: TcpListenerConfig) -> None:
        self.sock: socket.socket | None = None
        self.accepting = False
        self.cluster_id: str | None = None
        self.tags: dict[str, str] = {}
        self.configure(config)

    def configure(self, config: TcpListenerConfig) -> None:
        """New settings reach new connections; open ones keep the timeouts they started with."""
        self.config = config
        self.front_timeout = float(config.front_timeout)
        self.back_timeout = float(config.back_timeout)
        self.connect_timeout = float(config.connect_timeout)
        # ProxyHeaderReader (proxy_protocol/accept.py) waits this long for an `expect_proxy`
        # header: a TCP listener has no request timeout, its front timeout stands in for it.
        self.request_timeout = self.front_timeout
        self.expect_proxy = config.expect_proxy

    def accept_batch(
        self, room: int, nodelay: bool = True
    ) -> list[tuple[socket.socket, tuple[str, int]]]:
        assert self.sock is not None
        return accept_batch(self.sock, room, nodelay)


class TcpFigures:
    """The worker's TCP counters (`query_metrics`, Prometheus); per cluster and backend, bytes
    and connect failures are in the metrics registry, as HTTP's."""

    __slots__ = (
        "accepted",
        "active",
        "bytes_in",
        "bytes_out",
        "no_backend",
        "no_cluster",
        "per_ip_refused",
        "proxy_headers_sent",
        "relayed",
        "timeouts",
    )

    def __init__(self) -> None:
        self.accepted = 0  # client connections accepted on TCP listeners
        self.active = 0  # ... open now
        self.relayed = 0  # ... connected to a backend (sozu's `tcp.requests`)
        self.no_backend = 0  # closed: no backend could be reached
        self.no_cluster = 0  # closed: the listener has no frontend (or its cluster is gone)
        self.per_ip_refused = 0  # closed: the per-(client IP, cluster) limit
        self.timeouts = 0  # closed by front_timeout / back_timeout
        self.bytes_in = 0  # client to backend, counted when a connection ends
        self.bytes_out = 0
        self.proxy_headers_sent = 0  # send_proxy: PROXY v2 headers sent to backends

    def gauges(self) -> dict[str, int]:
        return {"protocol.tcp": self.active}

    def snapshot(self) -> dict[str, int]:
        return {
            "tcp.connections.accepted": self.accepted,
            "tcp.requests": self.relayed,
            "tcp.errors.no_backend": self.no_backend,
            "tcp.errors.no_cluster": self.no_cluster,
            "tcp.errors.per_ip_limit": self.per_ip_refused,
            "tcp.timeouts": self.timeouts,
            "tcp.bytes_in": self.bytes_in,
            "tcp.bytes_out": self.bytes_out,
            "tcp.proxy_protocol.sent": self.proxy_headers_sent,
        }


class TcpListeners:
    """The worker's TCP listeners by address, kept in step with its ConfigState."""

    def __init__(self) -> None:
        self.listeners: dict[SocketAddress, TcpListener] = {}
        self.figures = TcpFigures()

    def add_listener(self, config: TcpListenerConfig) -> None:
        listener = self.listeners.get(config.address)
        if listener is None:
            self.listeners[config.address] = TcpListener(config)
        else:
            listener.configure(config)

    def update_listener(self, patch: UpdateTcpListenerConfig) -> None:
        listener = self.listeners[patch.address]
        listener.configure(merge_listener_update(listener.config, patch))

    def remove_listener(self, address: SocketAddress) -> None:
        self.listeners.pop(address, None)

    def add_frontend(self, front: RequestTcpFrontend) -> None:
        listener = self.listeners[front.address]
        listener.cluster_id = front.cluster_id
        listener.tags = dict(front.tags)

    def remove_frontend(self, front: RequestTcpFrontend) -> None:
        listener = self.listeners.get(front.address)
        if listener is not None and listener.cluster_id == front.cluster_id:
            listener.cluster_id = None
            listener.tags = {}
