"""Events for `subscribe_events` clients: from workers, and from main's own changes.

Subscribers get each event as a PROCESSING response whose message names the source (`main` or
`WRK-NN`); the stream never ends. A subscriber that stops reading is disconnected by its
client session, never allowed to grow main's memory.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from dataplane.command.messages import Request
from dataplane.command.responses import Event, EventKind, Response, ResponseContent

log = logging.getLogger("pysozu.main.events")


class Subscriber(Protocol):
    closed: bool

    def send(self, response: Response) -> None: ...


_KINDS: dict[str, EventKind] = {
    "add_cluster": EventKind.CLUSTER_ADDED,
    "remove_cluster": EventKind.CLUSTER_REMOVED,
    "add_http_frontend": EventKind.FRONTEND_ADDED,
    "add_https_frontend": EventKind.FRONTEND_ADDED,
    "add_tcp_frontend": EventKind.FRONTEND_ADDED,
    "add_udp_frontend": EventKind.FRONTEND_ADDED,
    "remove_http_frontend": EventKind.FRONTEND_REMOVED,
    "remove_https_frontend": EventKind.FRONTEND_REMOVED,
    "remove_tcp_frontend": EventKind.FRONTEND_REMOVED,
    "remove_udp_frontend": EventKind.FRONTEND_REMOVED,
    "add_certificate": EventKind.CERTIFICATE_ADDED,
    "remove_certificate": EventKind.CERTIFICATE_REMOVED,
    "replace_certificate": EventKind.CERTIFICATE_REPLACED,
    "add_http_listener": EventKind.LISTENER_ADDED,
    "add_https_listener": EventKind.LISTENER_ADDED,
    "add_tcp_listener": EventKind.LISTENER_ADDED,
    "add_udp_listener": EventKind.LISTENER_ADDED,
    "remove_listener": EventKind.LISTENER_REMOVED,
    "activate_listener": EventKind.LISTENER_ACTIVATED,
    "deactivate_listener": EventKind.LISTENER_DEACTIVATED,
    "update_http_listener": EventKind.LISTENER_UPDATED,
    "update_https_listener": EventKind.LISTENER_UPDATED,
    "update_tcp_listener": EventKind.LISTENER_UPDATED,
    "update_udp_listener": EventKind.LISTENER_UPDATED,
}


def event_for(request: Request) -> Event | None:
    """The event a successful state change announces (None for backends and health checks)."""
    kind = _KINDS.get(request.verb)
    if kind is None:
        return None
    body: Any = request.body
    if isinstance(body, str):  # remove_cluster carries the bare id
        return Event(kind=kind, cluster_id=body)
    return Event(
        kind=kind,
        cluster_id=getattr(body, "cluster_id", None),
        address=getattr(body, "address", None),
    )


class EventHub:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)
        subscriber.send(self._frame("main", Event(kind=EventKind.EVENTS_SUBSCRIBED)))

    def emit(self, source: str, event: Event) -> None:
        log.debug("event from %s: %s", source, event.kind.name)
        self._subscribers = [s for s in self._subscribers if not s.closed]
        if not self._subscribers:
            return
        frame = self._frame(source, event)
        for subscriber in self._subscribers:
            subscriber.send(frame)

    def emit_for(self, request: Request) -> None:
        event = event_for(request)
        if event is not None:
            self.emit("main", event)

    @staticmethod
    def _frame(source: str, event: Event) -> Response:
        return Response.processing(source, ResponseContent.of(event=event))
