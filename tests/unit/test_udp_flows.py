"""The UDP flow table and listener mirror, without sockets: ordering, bounds, idle time,
state requests."""

from __future__ import annotations

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    RequestUdpFrontend,
    UdpListenerConfig,
    UpdateUdpListenerConfig,
)
from dataplane.proxy.balancing.backend import Backend
from dataplane.proxy.udp.flows import Flow, FlowTable
from dataplane.proxy.udp.listener import UdpListeners, auto_max_flows

ADDRESS = SocketAddress("127.0.0.1", 5353)
BACKEND = Backend("b0", SocketAddress("127.0.0.1", 53))


class Owner:
    def __init__(self) -> None:
        self.timeouts: list[tuple[Flow, float]] = []
        self.replies: list[Flow] = []

    def flow_timeout(self, flow: Flow, now: float) -> None:
        self.timeouts.append((flow, now))

    def flow_reply(self, flow: Flow) -> None:
        self.replies.append(flow)


def flow(port: int, owner: Owner | None = None, now: float = 0.0) -> Flow:
    return Flow(owner or Owner(), None, ("10.0.0.1", port), BACKEND, "c", None, now)


def test_the_table_evicts_the_least_recently_active_flow() -> None:
    table = FlowTable(max_flows=2)
    first, second = flow(1), flow(2)
    assert table.make_room() == []
    table.add(first)
    table.add(second)
    assert table.touch(("10.0.0.1", 1)) is first  # first is now the most recent
    assert table.make_room() == [second]
    assert len(table) == 1
    assert table.touch(("10.0.0.1", 2)) is None


def test_a_smaller_bound_evicts_down_to_it_at_the_next_new_flow() -> None:
    table = FlowTable(max_flows=5)
    flows = [flow(port) for port in range(5)]
    for each in flows:
        table.add(each)
    table.max_flows = 2
    assert table.make_room() == flows[:4]  # room for one more: one flow stays
    assert list(table) == flows[4:]


def test_remove_takes_only_the_same_flow() -> None:
    table = FlowTable(max_flows=3)
    old, new = flow(1), flow(1)
    table.add(old)
    table.add(new)  # the same client again: replaced
    assert not table.remove(old)
    assert table.remove(new)
    assert len(table) == 0


def test_a_flow_is_idle_once_both_directions_are() -> None:
    item = flow(1, now=100.0)
    assert item.idle_until(30, 10) == 130.0
    item.back_at = 125.0
    assert item.idle_until(30, 10) == 135.0
    owner = Owner()
    item.owner = owner
    item.on_timeout(140.0)
    item.on_reply(0)
    assert owner.timeouts == [(item, 140.0)] and owner.replies == [item]


def test_listeners_mirror_listener_and_frontend_requests() -> None:
    listeners = UdpListeners()
    listener = listeners.add_listener(UdpListenerConfig(address=ADDRESS, max_flows=7))
    assert listener.flows.max_flows == 7 and listener.max_datagram == 1500
    assert len(listener.buffer) == 1501  # one byte more than the bound: oversize shows
    listeners.update_listener(UpdateUdpListenerConfig(address=ADDRESS, max_rx_datagram_size=9))
    assert listener.max_datagram == 9 and listener.flows.max_flows == 7
    assert listener.front_timeout == 30.0
    front = RequestUdpFrontend(cluster_id="dns", address=ADDRESS, tags={"a": "b"})
    listeners.add_frontend(front)
    assert listener.cluster_id == "dns" and listener.tags == {"a": "b"}
    assert not listeners.remove_frontend(RequestUdpFrontend(cluster_id="x", address=ADDRESS))
    assert listeners.remove_frontend(front)
    assert listener.cluster_id is None


def test_max_flows_zero_means_a_share_of_the_descriptor_limit() -> None:
    listener = UdpListeners().add_listener(UdpListenerConfig(address=ADDRESS, max_flows=0))
    assert listener.flows.max_flows == auto_max_flows() >= 64
