"""A UDP listener in a worker: settings, the one cluster its frontend names, its flow table.

As a TCP listener, a UDP listener serves at most one cluster (`add_udp_frontend` names it);
a datagram arriving while it has none is dropped and counted. Its socket comes from main over
SCM (the `udp` group), or is bound here when main sent none. `UdpListeners` mirrors the state
requests about UDP listeners and frontends; `UdpFigures` are the worker's UDP figures, named
and meant as sozu 2.1's (`lib/src/metrics/names.rs`, `udp` module):

- `udp.datagrams.in` / `udp.bytes.in`: client datagrams forwarded to a backend (payload bytes);
  `udp.datagrams.out` / `udp.bytes.out`: replies returned to clients;
- `udp.datagrams.dropped`, and by reason `.truncated` (above `max_rx_datagram_size`),
  `.no_backend` (no cluster, no backend, or none healthy with `fail_open = false`), `.shed` (a
  new flow's socket could not be opened), `.unknown_flow` (a reply whose listener is gone),
  `.wq_full` (a send buffer full), `.send_error` (a send refused);
- `udp.flows.created`; `udp.flows.evicted`: every flow closed, whatever the reason (idle,
  `requests`/`responses`, backend removed or refusing, listener gone, room made), so
  created - evicted = `udp.active_flows` (the gauge); `udp.flows.shed`: a new flow refused
  because its socket could not be opened (sozu also sheds new flows at `max_flows`; pysozu
  closes the least recently active flow instead, counted apart in the pysozu extension
  `udp.flows.evicted.max_flows`);
- `udp.flow.duration`: histogram of flow lifetimes, recorded when a flow closes;
- `udp.backend.health` (verdict changes of UDP probes) is counted by `health/checks.py`.
"""

from __future__ import annotations

import resource
import socket
from bisect import bisect_left

from dataplane.command.address import SocketAddress
from dataplane.command.listener_update import merge_listener_update
from dataplane.command.messages import (
    RequestUdpFrontend,
    UdpListenerConfig,
    UpdateUdpListenerConfig,
)
from dataplane.proxy.observability.metrics import BOUNDS_SECONDS, Histogram
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
    """The worker's UDP counters and histogram (`query_metrics`, Prometheus, StatsD)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "datagrams_in",
        "datagrams_out",
        "dropped",
        "dropped_no_backend",
        "dropped_send_error",
        "dropped_shed",
        "dropped_truncated",
        "dropped_unknown_flow",
        "dropped_wq_full",
        "flow_duration",
        "flows_created",
        "flows_evicted",
        "flows_evicted_max_flows",
        "flows_shed",
    )

    def __init__(self) -> None:
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.dropped = 0
        self.dropped_truncated = 0
        self.dropped_no_backend = 0
        self.dropped_shed = 0
        self.dropped_unknown_flow = 0
        self.dropped_wq_full = 0
        self.dropped_send_error = 0
        self.flows_created = 0
        self.flows_evicted = 0
        self.flows_evicted_max_flows = 0
        self.flows_shed = 0
        self.flow_duration = Histogram()

    def flow_ended(self, seconds: float) -> None:
        self.flows_evicted += 1
        duration = self.flow_duration
        duration.counts[bisect_left(BOUNDS_SECONDS, seconds)] += 1
        duration.sum += seconds

    def snapshot(self) -> dict[str, int]:
        return {
            "udp.datagrams.in": self.datagrams_in,
            "udp.datagrams.out": self.datagrams_out,
            "udp.datagrams.dropped": self.dropped,
            "udp.datagrams.dropped.truncated": self.dropped_truncated,
            "udp.datagrams.dropped.no_backend": self.dropped_no_backend,
            "udp.datagrams.dropped.shed": self.dropped_shed,
            "udp.datagrams.dropped.unknown_flow": self.dropped_unknown_flow,
            "udp.datagrams.dropped.wq_full": self.dropped_wq_full,
            "udp.datagrams.dropped.send_error": self.dropped_send_error,
            "udp.bytes.in": self.bytes_in,
            "udp.bytes.out": self.bytes_out,
            "udp.flows.created": self.flows_created,
            "udp.flows.evicted": self.flows_evicted,
            "udp.flows.evicted.max_flows": self.flows_evicted_max_flows,
            "udp.flows.shed": self.flows_shed,
        }

    def histograms(self) -> dict[str, Histogram]:
        return {"udp.flow.duration": self.flow_duration}


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
