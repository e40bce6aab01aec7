"""The worker's active health checks: which backends to probe when, and what a verdict does.

As in sozu, each worker runs the checks of its clusters in its own event loop (the loop calls
`tick` once a second): every `interval` seconds, one probe per backend of each cluster that
has a `health_check` (a probe still running is not doubled). Clusters served by a TCP
listener get a TCP connect probe; the others an HTTP one (`GET <uri>`, see `verdict.py`).
With N workers, a backend sees N probes per interval; each worker takes its own backends out
of its own rotation, so no worker depends on another's results.

A verdict change (`Verdict`: consecutive results against the thresholds) sets the backend's
`healthy` flag, which the load balancer reads (`load_balancing.py`: an unhealthy backend is
no candidate; when every backend is out, the cluster fails open). It is logged and sent to
main as events: HEALTH_CHECK_UNHEALTHY / HEALTH_CHECK_HEALTHY always, BACKEND_DOWN /
BACKEND_UP when the backend's availability changed (the circuit breaker may already have taken
it out), NO_AVAILABLE_BACKENDS / CLUSTER_RECOVERED for the cluster. Removing a check (or its
cluster) puts its backends back in rotation. Verdicts are not persisted (as sozu).

Figures: `health_check.success`, `.failure` (probes), `.up`, `.down` (verdict changes), the
gauge `health_check.healthy_backends`; per backend the gauge `health_check.healthy`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from dataplane.command.address import SocketAddress
from dataplane.command.messages import HealthCheckConfig, Request
from dataplane.command.responses import (
    Event,
    EventKind,
    ResponseContent,
    ResponseStatus,
    WorkerResponse,
)
from dataplane.proxy.health.probe import Probe
from dataplane.proxy.health.verdict import Verdict, http_request

if TYPE_CHECKING:
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.mux.host import Host

log = logging.getLogger("dataplane.worker")

Key = tuple[str, str, SocketAddress]  # cluster id, backend id, address
_numbers = itertools.count()


class HealthChecks:
    """Every health check of one worker (`loop.health`)."""

    def __init__(self, loop: Host) -> None:
        self.loop = loop
        self.checks: dict[str, HealthCheckConfig] = {}
        self.due: dict[str, float] = {}
        self.verdicts: dict[Key, Verdict] = {}
        self.probes: dict[Key, Probe] = {}
        self.success = self.failure = self.up = self.down = 0
        loop.metrics.counter_sources.append(self.snapshot)
        loop.metrics.gauge_sources.append(self.gauges)
        loop.metrics.backend_gauge_sources.append(self.backend_gauges)

    # -- state requests --------------------------------------------------------------------

    def apply(self, request: Request) -> None:
        verb, body = request.verb, request.body
        if verb == "set_health_check":
            self._set(body.cluster_id, body.config)
        elif verb == "remove_health_check":
            self._unset(body)
        elif verb == "add_cluster":
            if body.health_check is not None:
                self._set(body.cluster_id, body.health_check)
            else:
                self._unset(body.cluster_id)
        elif verb == "remove_cluster":
            self._unset(body)
        elif verb == "remove_backend":
            key = (body.cluster_id, body.backend_id, body.address)
            self.verdicts.pop(key, None)
            probe = self.probes.pop(key, None)
            if probe is not None:
                probe.close()

    def _set(self, cluster_id: str, config: HealthCheckConfig) -> None:
        if self.checks.get(cluster_id) != config:
            self.due[cluster_id] = self.loop.now  # a new or changed check probes at once
        self.checks[cluster_id] = config

    def _unset(self, cluster_id: str) -> None:
        if self.checks.pop(cluster_id, None) is None:
            return
        self.due.pop(cluster_id, None)
        for key in [key for key in self.probes if key[0] == cluster_id]:
            self.probes.pop(key).close()
        for key in [key for key in self.verdicts if key[0] == cluster_id]:
            del self.verdicts[key]
        cluster = self.loop.proxy.clusters.get(cluster_id)
        if cluster is not None:
            for backend in cluster.backends:
                backend.set_healthy(True)  # no check, no verdict: back in rotation

    # -- probing ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Once a second: start the probes that are due."""
        for cluster_id, config in self.checks.items():
            if now < self.due.get(cluster_id, now):
                continue
            self.due[cluster_id] = now + config.interval
            cluster = self.loop.proxy.clusters.get(cluster_id)
            if cluster is None:
                continue
            tcp = self._served_by_tcp(cluster_id)
            for backend in cluster.backends:
                key = (cluster_id, backend.backend_id, backend.address)
                if key in self.probes:
                    continue  # the previous one has not ended (its timeout will end it)
                request = None if tcp else http_request(config.uri, str(backend.address))
                probe = Probe(
                    self.loop,
                    backend.address,
                    request,
                    config.expected_status,
                    float(config.timeout),
                    self._on_result(key, backend),
                )
                if probe.running:
                    self.probes[key] = probe

    def _served_by_tcp(self, cluster_id: str) -> bool:
        listeners = self.loop.proxy.tcp.listeners.values()
        return any(listener.cluster_id == cluster_id for listener in listeners)

    def _on_result(self, key: Key, backend: Backend) -> Callable[[bool], None]:
        return lambda passed: self._result(key, backend, passed)

    def _result(self, key: Key, backend: Backend, passed: bool) -> None:
        self.probes.pop(key, None)
        config = self.checks.get(key[0])
        cluster = self.loop.proxy.clusters.get(key[0])
        if config is None or cluster is None or backend.removed:
            return
        if passed:
            self.success += 1
        else:
            self.failure += 1
        verdict = self.verdicts.get(key)
        if verdict is None:
            verdict = self.verdicts[key] = Verdict()
        change = verdict.record(passed, config.healthy_threshold, config.unhealthy_threshold)
        if change is not None:
            self._changed(cluster, backend, change)

    def _changed(self, cluster: ClusterRuntime, backend: Backend, healthy: bool) -> None:
        was_available = backend.is_available
        backend.set_healthy(healthy)
        available = sum(1 for other in cluster.backends if other.is_available)
        where = f"backend {backend.backend_id} at {backend.address} of cluster {cluster.cluster_id}"
        if healthy:
            self.up += 1
            log.info("health check: %s is healthy again", where)
            self._event(EventKind.HEALTH_CHECK_HEALTHY, cluster, backend)
            if not was_available and backend.is_available:
                self._event(EventKind.BACKEND_UP, cluster, backend)
                if available == 1:
                    self._event(EventKind.CLUSTER_RECOVERED, cluster, None)
        else:
            self.down += 1
            log.error("health check: %s is unhealthy", where)
            self._event(EventKind.HEALTH_CHECK_UNHEALTHY, cluster, backend)
            if was_available:
                self._event(EventKind.BACKEND_DOWN, cluster, backend)
                if not available:
                    self._event(EventKind.NO_AVAILABLE_BACKENDS, cluster, None)

    def _event(self, kind: EventKind, cluster: ClusterRuntime, backend: Backend | None) -> None:
        event = Event(
            kind=kind,
            cluster_id=cluster.cluster_id,
            backend_id=backend.backend_id if backend is not None else None,
            address=backend.address if backend is not None else None,
        )
        self.loop.send(
            WorkerResponse(
                id=f"EVENT-HC-{next(_numbers)}",
                status=ResponseStatus.PROCESSING,
                content=ResponseContent.of(event=event),
            )
        )

    def close_all(self) -> None:
        for probe in self.probes.values():
            probe.close()
        self.probes.clear()

    # -- figures ---------------------------------------------------------------------------

    def _checked_backends(self) -> Iterator[tuple[str, Backend]]:
        clusters = self.loop.proxy.clusters
        for cluster_id in self.checks:
            cluster = clusters.get(cluster_id)
            if cluster is not None:
                for backend in cluster.backends:
                    yield cluster_id, backend

    def snapshot(self) -> dict[str, int]:
        return {
            "health_check.success": self.success,
            "health_check.failure": self.failure,
            "health_check.up": self.up,
            "health_check.down": self.down,
        }

    def gauges(self) -> dict[str, int]:
        healthy = sum(1 for _, backend in self._checked_backends() if backend.healthy)
        return {"health_check.healthy_backends": healthy}

    def backend_gauges(self) -> list[tuple[str, str, str, int]]:
        return [
            (cluster_id, backend.backend_id, "health_check.healthy", int(backend.healthy))
            for cluster_id, backend in self._checked_backends()
        ]
