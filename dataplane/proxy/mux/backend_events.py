"""What a worker tells main when a backend's circuit breaker opens or closes (sozu's events).

Connect failures and successes are reported here by the session; the `Backend` says whether
its breaker changed state. A change is logged, counted per cluster and backend, and pushed to
main as an unsolicited `WorkerResponse` (id `EVENT-<n>`, status PROCESSING, an `Event`), which
main forwards to its `subscribe_events` clients:

- BACKEND_DOWN: this failure opened the breaker (the backend is no longer available);
- NO_AVAILABLE_BACKENDS: ... and no backend of its cluster is available any more;
- BACKEND_UP: a connect succeeded while the breaker was open;
- CLUSTER_RECOVERED: ... and it is the first backend of its cluster available again;
- REMOVED_BACKEND_HAS_NO_CONNECTIONS: a backend removed from its cluster has no connection left
  (at once if it had none): the operator may stop it.

Only state changes cost anything: a connect that changes nothing is a counter increment.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

from dataplane.command.responses import (
    Event,
    EventKind,
    ResponseContent,
    ResponseStatus,
    WorkerResponse,
)

if TYPE_CHECKING:
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.mux.host import Host

log = logging.getLogger("dataplane.worker")

_numbers = itertools.count()


def connect_failed(loop: Host, cluster: ClusterRuntime, backend: Backend) -> None:
    loop.metrics.cluster(cluster.cluster_id).connect_failed(backend.backend_id)
    if not backend.connect_failed(loop.now):
        return
    log.error("backend server %s at %s is down", backend.backend_id, backend.address)
    _push(loop, EventKind.BACKEND_DOWN, cluster, backend)
    if not any(other.is_available for other in cluster.backends):
        log.error("cluster %s: all %d backends are down", cluster.cluster_id, len(cluster.backends))
        _push(loop, EventKind.NO_AVAILABLE_BACKENDS, cluster, None)


def connect_succeeded(loop: Host, cluster: ClusterRuntime, backend: Backend, took: float) -> None:
    if not backend.connect_succeeded(took, loop.now):
        return
    log.info("backend server %s at %s is up", backend.backend_id, backend.address)
    _push(loop, EventKind.BACKEND_UP, cluster, backend)
    available = sum(1 for other in cluster.backends if other.is_available)
    if available == 1:
        log.info("cluster %s: backends recovered", cluster.cluster_id)
        _push(loop, EventKind.CLUSTER_RECOVERED, cluster, None)


def backend_removed(loop: Host, cluster_id: str, backend: Backend) -> None:
    """`backend` left `cluster_id`: its idle pooled connections close now, and the event goes
    out once no connection to it is left (see `connection_closed`)."""
    backend.removed = True
    loop.pool.discard_backend(backend)
    if not backend.active_connections:
        _drained(loop, cluster_id, backend)


def connection_closed(loop: Host, cluster_id: str, backend: Backend) -> None:
    backend.connection_closed()
    if backend.removed and not backend.active_connections:
        _drained(loop, cluster_id, backend)


def _drained(loop: Host, cluster_id: str, backend: Backend) -> None:
    log.info("removed backend %s at %s has no connection left", backend.backend_id, backend.address)
    _send(
        loop,
        Event(
            kind=EventKind.REMOVED_BACKEND_HAS_NO_CONNECTIONS,
            cluster_id=cluster_id,
            backend_id=backend.backend_id,
            address=backend.address,
        ),
    )


def _push(loop: Host, kind: EventKind, cluster: ClusterRuntime, backend: Backend | None) -> None:
    event = Event(
        kind=kind,
        cluster_id=cluster.cluster_id,
        backend_id=backend.backend_id if backend is not None else None,
        address=backend.address if backend is not None else None,
    )
    _send(loop, event)


def _send(loop: Host, event: Event) -> None:
    loop.send(
        WorkerResponse(
            id=f"EVENT-{next(_numbers)}",
            status=ResponseStatus.PROCESSING,
            content=ResponseContent.of(event=event),
        )
    )
