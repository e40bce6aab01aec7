"""UDP flows: a client address pinned to one backend, and the bounded table of them.

A flow starts with the first datagram from a client address (host and port) on a listener: a
backend is chosen by the cluster's load balancer (hashing algorithms key on the client IP, or
IP and port with `affinity_key = SOURCE_IP_PORT`), and the flow gets its own socket connected
to that backend, so the backend's replies come back on it and go to that client alone (from
the listener's address). Every later datagram of the client takes the same socket.

A flow ends when it has been idle both ways (no datagram from the client for `front_timeout`
and none from the backend for `back_timeout`), after the cluster's `requests` datagrams from
the client or `responses` replies (0: no limit), when its backend is removed or refuses
(ICMP port unreachable), or when the table is full: `FlowTable` keeps at most `max_flows`,
and makes room by closing the least recently active one (counted as evicted).

The table is sans-IO: it orders and bounds flows; sockets are `proxy.py`'s business.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from dataplane.proxy.timers import NOT_FILED

if TYPE_CHECKING:
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.udp.listener import UdpListener

Client = tuple[str, int]


class FlowOwner(Protocol):
    def flow_timeout(self, flow: Flow, now: float) -> None: ...

    def flow_reply(self, flow: Flow) -> None: ...


class Flow:
    """One client address's datagrams, relayed to and from one backend."""

    __slots__ = (
        "back_at",
        "backend",
        "bytes_in",
        "bytes_out",
        "client",
        "cluster_id",
        "created",
        "deadline",
        "fd",
        "front_at",
        "header",
        "header_every",
        "listener",
        "max_requests",
        "max_responses",
        "owner",
        "requests",
        "responses",
        "sock",
        "timer_slot",
    )

    def __init__(
        self,
        owner: FlowOwner,
        listener: UdpListener | None,
        client: Client,
        backend: Backend,
        cluster_id: str,
        sock: socket.socket | None,
        now: float,
    ) -> None:
        self.owner = owner
        self.listener = listener
        self.client = client
        self.backend = backend
        self.cluster_id = cluster_id
        self.sock = sock
        self.fd = sock.fileno() if sock is not None else -1
        self.created = self.front_at = self.back_at = now
        self.requests = self.responses = 0
        self.max_requests = self.max_responses = 0  # the cluster's `requests`/`responses`
        self.bytes_in = self.bytes_out = 0
        self.header: bytes | None = None  # a PROXY v2 header still to send (send_proxy)
        self.header_every = False  # ... before every datagram, not only the first
        self.deadline = 0.0
        self.timer_slot = NOT_FILED

    def idle_until(self, front_timeout: float, back_timeout: float) -> float:
        """When the flow will have been idle both ways."""
        return max(self.front_at + front_timeout, self.back_at + back_timeout)

    def on_timeout(self, now: float) -> None:
        self.owner.flow_timeout(self, now)

    def on_reply(self, _mask: int) -> None:
        self.owner.flow_reply(self)


class FlowTable:
    """A listener's flows by client address, least recently active first, at most
    `max_flows`."""

    __slots__ = ("flows", "max_flows")

    def __init__(self, max_flows: int = 1) -> None:
        self.flows: OrderedDict[Client, Flow] = OrderedDict()
        self.max_flows = max_flows

    def __len__(self) -> int:
        return len(self.flows)

    def __iter__(self) -> Iterator[Flow]:
        """A copy: closing flows while iterating is allowed."""
        return iter(list(self.flows.values()))

    def touch(self, client: Client) -> Flow | None:
        """The client's flow, now the most recently active one (None: no flow yet)."""
        flow = self.flows.get(client)
        if flow is not None:
            self.flows.move_to_end(client)
        return flow

    def make_room(self) -> list[Flow]:
        """The flows to close before a new one fits (the least recently active first);
        already taken out of the table."""
        evicted = []
        limit = max(1, self.max_flows)
        while len(self.flows) >= limit:
            _client, flow = self.flows.popitem(last=False)
            evicted.append(flow)
        return evicted

    def add(self, flow: Flow) -> None:
        self.flows[flow.client] = flow

    def remove(self, flow: Flow) -> bool:
        """Take `flow` out; False when it was not (or no longer) in the table."""
        if self.flows.get(flow.client) is flow:
            del self.flows[flow.client]
            return True
        return False
