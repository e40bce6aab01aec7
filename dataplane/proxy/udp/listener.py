"""A UDP listener in a worker: settings, the one cluster its frontend names, its flow table.

As a TCP listener, a UDP listener serves at most one cluster (`add_udp_frontend` names it);
a datagram arriving while it has none is dropped and counted. Its socket comes from main over
SCM (the `udp` group), or is bound here when main sent none. `UdpListeners` mirrors the state
requests about UDP listeners and frontends; `UdpFigures` are the worker's UDP counters, named
as sozu's (`udp.datagrams.*`, `udp.bytes.*`, `udp.flows.*`, `udp.active_flows`).
"""

from __future__ import annotations

import resource
import socket

from dataplane.command.address import SocketAddress
from dataplane.command.listener_update import merge_listener_update
from dataplane.command.messages import (
    RequestUdpFrontend,
    UdpListenerConfig,
    UpdateUdpListenerConfig,
)
from dataplane.proxy.udp.flows import FlowTable

# max_flows = 0 means "auto" in sozu: about 70% of the soft RLIMIT_NOFILE (a flow holds a socket).
AUTO_FLOWS_SHARE = 0.7
AUTO_FLOWS_FLOOR = 64


def auto_max_flows() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(AUTO_FLOWS_FLOOR, int(soft * AUTO_FLOWS_SHARE))


class UdpFigures:
    """The worker's UDP counters and gauge (`query_metrics`, Prometheus, StatsD)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "datagrams_in",
        "datagrams_out",
        "dropped",
        "flows_created",
        "flows_evicted",
        "flows_shed",
        "flows_timed_out",
        "oversized",
    )

    def __init__(self) -> None:
        self.datagrams_in = 0  # from clients
        self.datagrams_out = 0  # replies sent back to clients
        self.bytes_in = 0
        self.bytes_out = 0
        self.dropped = 0  # every datagram not passed on (oversized, no cluster or backend...)
        self.oversized = 0  # ... of which larger than max_rx_datagram_size
        self.flows_created = 0
        self.flows_evicted = 0  # the oldest flow closed to make room (max_flows)
        self.flows_shed = 0  # a new flow refused: no cluster or no backend for it
        self.flows_timed_out = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "udp.datagrams.in": self.datagrams_in,
            "udp.datagrams.out": self.datagrams_out,
            "udp.datagrams.dropped": self.dropped,
            "udp.datagrams.oversized": self.oversized,
            "udp.bytes.in": self.bytes_in,
            "udp.bytes.out": self.bytes_out,
            "udp.flows.created": self.flows_created,
            "udp.flows.evicted": self.flows_evicted,
            "udp.flows.shed": self.flows_shed,
            "udp.flows.timed_out": self.flows_timed_out,
        }


class UdpListener:
    """One UDP listener's settings, its cluster and flows; its socket while active."""

    scheme = "udp"

    def __init__(self, config: UdpListenerConfig) -> None:
        self.sock: socket.socket | None = None
        self.cluster_id: str | None = None
        self.tags: dict[str, str] = {}
        self.flows = FlowTable()
        self.configure(config)

    def configure(self, config: UdpListenerConfig) -> None:
        """New settings apply to the next datagram (timeouts: to open flows at their next
        datagram); a smaller max_flows evicts the oldest flows at the next new flow."""
        self.config = config
        self.front_timeout = float(config.front_timeout)
        self.back_timeout = float(config.back_timeout)
        self.max_datagram = max(1, config.max_rx_datagram_size)
        self.buffer = bytearray(self.max_datagram + 1)  # one byte more: oversize shows
        self.view = memoryview(self.buffer)
        self.flows.max_flows = config.max_flows or auto_max_flows()


class UdpListeners:
    """The worker's UDP listeners by address, kept in step with its ConfigState."""

    def __init__(self) -> None:
        self.listeners: dict[SocketAddress, UdpListener] = {}
        self.figures = UdpFigures()

    def add_listener(self, config: UdpListenerConfig) -> UdpListener:
        listener = self.listeners.get(config.address)
        if listener is None:
            listener = self.listeners[config.address] = UdpListener(config)
        else:
            listener.configure(config)
        return listener

    def update_listener(self, patch: UpdateUdpListenerConfig) -> None:
        listener = self.listeners[patch.address]
        listener.configure(merge_listener_update(listener.config, patch))

    def add_frontend(self, front: RequestUdpFrontend) -> None:
        listener = self.listeners[front.address]
        listener.cluster_id = front.cluster_id
        listener.tags = dict(front.tags)

    def remove_frontend(self, front: RequestUdpFrontend) -> bool:
        """True when the listener lost its cluster (its flows must go)."""
        listener = self.listeners.get(front.address)
        if listener is not None and listener.cluster_id == front.cluster_id:
            listener.cluster_id = None
            listener.tags = {}
            return True
        return False
