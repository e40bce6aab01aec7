"""Events main announces, and their delivery to subscribers."""

from __future__ import annotations

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.logs import LogTargetError, parse_level
from dataplane.command.messages import ActivateListener, Cluster, ListenerType, Request
from dataplane.command.responses import EventKind, Response, ResponseStatus
from dataplane.main.clients import describe
from dataplane.main.events import EventHub, event_for

pytestmark = pytest.mark.timeout(10)


class Subscriber:
    def __init__(self) -> None:
        self.closed = False
        self.frames: list[Response] = []

    def send(self, response: Response) -> None:
        self.frames.append(response)


def test_state_changes_map_to_events() -> None:
    added = event_for(Request.of(add_cluster=Cluster(cluster_id="app")))
    assert added is not None and added.kind == EventKind.CLUSTER_ADDED
    assert added.cluster_id == "app"
    removed = event_for(Request.of(remove_cluster="app"))
    assert removed is not None and removed.kind == EventKind.CLUSTER_REMOVED
    address = SocketAddress.parse("127.0.0.1:80")
    activated = event_for(
        Request.of(activate_listener=ActivateListener(address=address, proxy=ListenerType.HTTP))
    )
    assert activated is not None and activated.address == address


def test_subscribers_get_processing_frames_and_closed_ones_are_dropped() -> None:
    hub = EventHub()
    first, second = Subscriber(), Subscriber()
    hub.subscribe(first)
    hub.subscribe(second)
    assert first.frames[0].content is not None
    assert first.frames[0].content.value.kind == EventKind.EVENTS_SUBSCRIBED
    second.closed = True
    hub.emit_for(Request.of(remove_cluster="app"))
    assert len(first.frames) == 2 and len(second.frames) == 1
    frame = first.frames[1]
    assert frame.status == ResponseStatus.PROCESSING and frame.message == "main"


@pytest.mark.parametrize(
    ("spec", "level"), [("info", 20), ("sozu=debug,warn", 10), ("error", 40), ("trace", 10)]
)
def test_log_filters(spec: str, level: int) -> None:
    assert parse_level(spec) == level


def test_unknown_log_level_is_refused() -> None:
    with pytest.raises(LogTargetError, match="unknown log level 'loud'"):
        parse_level("loud")


def test_unknown_verbs_are_named_as_such() -> None:
    reason = "invalid message: Object contains unknown field `TELEPORT` - at `$.request_type`"
    assert describe(reason) == "unknown verb TELEPORT"
    assert describe("frame length 3 is below the 8-byte prefix") == (
        "frame length 3 is below the 8-byte prefix"
    )
