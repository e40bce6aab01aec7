"""The worker's active health checks: which backends to probe when, and what a verdict does.

Every worker keeps the checks of its clusters and the loop calls `tick` once a second, but only
the prober probes (`active`: main names one worker with `set_health_prober`, see
LIFECYCLE.md): every `interval` seconds, one probe per backend of each cluster that has a
`health_check` (a probe still running is not doubled). The other workers keep the rhythm
without probing and take the prober's verdicts as main relays them (`relay`,
`set_backend_health`): their backends' `healthy` flags and gauges follow, without events or
`.up`/`.down` counts (the prober's). A worker started by main starts inactive (boot.py); one
built without main (tests) is active. Clusters served by a TCP
listener get a TCP connect probe; the others an HTTP one (`GET <uri>`, see `verdict.py`).
A cluster with `[clusters.<id>.udp.health]` (mode TCP_PROBE or UDP_PROBE) gets sozu 2.1's UDP
backend probes instead, every `probe_interval_seconds`, with `rise`/`fall` as thresholds
(`verdict.udp_plan`; when a cluster has both tables, the UDP one is run).

A verdict change (`Verdict`: consecutive results against the thresholds) sets the backend's
`healthy` flag, which the load balancer reads (`load_balancing.py`: an unhealthy backend is
no candidate; when every backend is out, the cluster fails open). It is logged and sent to
main as events: HEALTH_CHECK_UNHEALTHY / HEALTH_CHECK_HEALTHY always, BACKEND_DOWN /
BACKEND_UP when the backend's availability changed (the circuit breaker may already have taken
it out), NO_AVAILABLE_BACKENDS / CLUSTER_RECOVERED for the cluster. Removing a check (or its
cluster) puts its backends back in rotation. Verdicts are not persisted (as sozu).

Figures: `health_check.success`, `.failure` (probes), `.up`, `.down` (verdict changes) of
HTTP/TCP checks; `udp.backend.health`, the verdict changes of UDP probes (as sozu counts
them); the gauge `health_check.healthy_backends`; per backend the gauge `health_check.healthy`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Cluster, Request, SetBackendHealth
from dataplane.command.responses import (
    BackendHealth,
    ClusterInformation,
    Event,
    EventKind,
    ResponseContent,
    ResponseStatus,
    WorkerResponse,
)
from dataplane.proxy.health.probe import Probe, UdpProbe
from dataplane.proxy.health.verdict import Plan, Verdict, http_plan, http_request, udp_plan

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
        self.http_plans: dict[str, Plan] = {}  # `health_check`
        self.udp_plans: dict[str, Plan] = {}  # `udp.health`, run instead when both are set
        self.due: dict[str, float] = {}
        self.verdicts: dict[Key, Verdict] = {}
        self.probes: dict[Key, Probe | UdpProbe] = {}
        self.success = self.failure = self.up = self.down = 0
        self.udp_transitions = 0
        self.active = True  # the prober (set_health_prober); inactive workers probe nothing
        loop.metrics.counter_sources.append(self.snapshot)
        loop.metrics.gauge_sources.append(self.gauges)
        loop.metrics.backend_gauge_sources.append(self.backend_gauges)

    def plan(self, cluster_id: str) -> Plan | None:
        """The check run for a cluster, if any."""
        return self.udp_plans.get(cluster_id) or self.http_plans.get(cluster_id)

    # -- state requests --------------------------------------------------------------------

    def apply(self, request: Request) -> None:
        verb, body = request.verb, request.body
        if verb == "set_health_check":
            self._set(body.cluster_id, self.http_plans, http_plan(body.config))
        elif verb == "remove_health_check":
            self._set(body, self.http_plans, None)
        elif verb == "add_cluster":
            self._add_cluster(body)
        elif verb == "remove_cluster":
            self._set(body, self.http_plans, None)
            self._set(body, self.udp_plans, None)
        elif verb == "remove_backend":
            key = (body.cluster_id, body.backend_id, body.address)
            self.verdicts.pop(key, None)
            probe = self.probes.pop(key, None)
            if probe is not None:
                probe.close()

    def _add_cluster(self, cluster: Cluster) -> None:
        check = cluster.health_check
        self._set(cluster.cluster_id, self.http_plans, http_plan(check) if check else None)
        health = cluster.udp.health if cluster.udp is not None else None
        self._set(cluster.cluster_id, self.udp_plans, udp_plan(health) if health else None)

    def _set(self, cluster_id: str, plans: dict[str, Plan], plan: Plan | None) -> None:
        before = self.plan(cluster_id)
        if plan is None:
            plans.pop(cluster_id, None)
        else:
            plans[cluster_id] = plan
        after = self.plan(cluster_id)
        if after is None:
            if before is not None:
                self._unset(cluster_id)
        elif after != before:
            self.due[cluster_id] = self.loop.now  # a new or changed check probes at once
            if before is not None and after.kind != before.kind:
                self._forget(cluster_id)  # another kind of probe: verdicts start afresh

    def _forget(self, cluster_id: str) -> None:
        for key in [key for key in self.probes if key[0] == cluster_id]:
            self.probes.pop(key).close()
        for key in [key for key in self.verdicts if key[0] == cluster_id]:
            del self.verdicts[key]
        cluster = self.loop.proxy.clusters.get(cluster_id)
        if cluster is not None:
            for backend in cluster.backends:
                backend.set_healthy(True)  # no check, no verdict: back in rotation

    def _unset(self, cluster_id: str) -> None:
        self.due.pop(cluster_id, None)
        self._forget(cluster_id)

    # -- probing ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Once a second: start the probes that are due."""
        if not self.due:
            return
        for cluster_id, due in list(self.due.items()):
            plan = self.plan(cluster_id)
            if now < due or plan is None:
                continue
            self.due[cluster_id] = now + plan.interval  # inactive: the rhythm goes on
            cluster = self.loop.proxy.clusters.get(cluster_id)
            if cluster is None or not self.active:
                continue
            kind = plan.kind
            if kind == "http" and self._served_by_tcp(cluster_id):
                kind = "tcp"
            for backend in cluster.backends:
                key = (cluster_id, backend.backend_id, backend.address)
                if key in self.probes:
                    continue  # the previous one has not ended (its timeout will end it)
                probe = self._probe(kind, plan, backend, self._on_result(key, backend))
                if probe.running:
                    self.probes[key] = probe

    def set_active(self, active: bool) -> None:
        """`set_health_prober`: main names this worker the prober, or no longer. A worker
        that stops probing drops its probes in flight (no verdict from a former prober) and
        its partial counts; its next probe as prober comes at the cluster's next due time."""
        if active == self.active:
            return
        self.active = active
        log.info("health checks: this worker %s", "probes" if active else "no longer probes")
        if not active:
            self.close_all()
            for verdict in self.verdicts.values():
                verdict.take(verdict.healthy)

    def relay(self, relayed: SetBackendHealth) -> bool:
        """`set_backend_health`: the prober's verdict on one backend. False: this worker has
        no such backend under a check (removed meanwhile): nothing to do."""
        cluster = self.loop.proxy.clusters.get(relayed.cluster_id)
        if cluster is None or self.plan(relayed.cluster_id) is None:
            return False
        for backend in cluster.backends:
            if backend.backend_id == relayed.backend_id and backend.address == relayed.address:
                key = (relayed.cluster_id, backend.backend_id, backend.address)
                verdict = self.verdicts.get(key)
                if verdict is None:
                    verdict = self.verdicts[key] = Verdict()
                verdict.take(relayed.healthy)
                if backend.healthy != relayed.healthy:
                    log.info(
                        "health check (prober's verdict): backend %s at %s of cluster %s is %s",
                        backend.backend_id,
                        backend.address,
                        cluster.cluster_id,
                        "healthy again" if relayed.healthy else "unhealthy",
                    )
                backend.set_healthy(relayed.healthy)
                return True
        return False

    def _probe(
        self, kind: str, plan: Plan, backend: Backend, done: Callable[[bool], None]
    ) -> Probe | UdpProbe:
        address = backend.address
        if kind == "udp":
            return UdpProbe(self.loop, address, plan.payload, plan.timeout, done)
        if kind == "udp-tcp" and plan.port is not None:
            address = SocketAddress(address.ip, plan.port)  # sozu's companion `tcp_port`
        request = http_request(plan.uri, str(address)) if kind == "http" else None
        return Probe(self.loop, address, request, plan.expected_status, plan.timeout, done)

    def _served_by_tcp(self, cluster_id: str) -> bool:
        listeners = self.loop.proxy.tcp.listeners.values()
        return any(listener.cluster_id == cluster_id for listener in listeners)

    def _on_result(self, key: Key, backend: Backend) -> Callable[[bool], None]:
        return lambda passed: self._result(key, backend, passed)

    def _result(self, key: Key, backend: Backend, passed: bool) -> None:
        self.probes.pop(key, None)
        plan = self.plan(key[0])
        cluster = self.loop.proxy.clusters.get(key[0])
        if plan is None or cluster is None or backend.removed:
            return
        udp = plan.udp  # sozu counts UDP probes' verdict changes only (udp.backend.health)
        if not udp:
            if passed:
                self.success += 1
            else:
                self.failure += 1
        verdict = self.verdicts.get(key)
        if verdict is None:
            verdict = self.verdicts[key] = Verdict()
        change = verdict.record(passed, plan.rise, plan.fall)
        if change is not None:
            if udp:
                self.udp_transitions += 1
            elif change:
                self.up += 1
            else:
                self.down += 1
            self._changed(cluster, backend, change)

    def _changed(self, cluster: ClusterRuntime, backend: Backend, healthy: bool) -> None:
        was_available = backend.is_available
        backend.set_healthy(healthy)
        available = sum(1 for other in cluster.backends if other.is_available)
        where = f"backend {backend.backend_id} at {backend.address} of cluster {cluster.cluster_id}"
        if healthy:
            log.info("health check: %s is healthy again", where)
            self._event(EventKind.HEALTH_CHECK_HEALTHY, cluster, backend)
            if not was_available and backend.is_available:
                self._event(EventKind.BACKEND_UP, cluster, backend)
                if available == 1:
                    self._event(EventKind.CLUSTER_RECOVERED, cluster, None)
        else:
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
        for cluster_id in self.http_plans.keys() | self.udp_plans.keys():
            cluster = clusters.get(cluster_id)
            if cluster is not None:
                for backend in cluster.backends:
                    yield cluster_id, backend

    def annotate(self, info: ClusterInformation) -> None:
        """A cluster query's answer gets this worker's verdicts (`backend list`)."""
        config = info.configuration
        if config is None or self.plan(config.cluster_id) is None:
            return
        cluster = self.loop.proxy.clusters.get(config.cluster_id)
        if cluster is not None:
            info.backend_health = [
                BackendHealth(backend_id=b.backend_id, address=b.address, healthy=b.healthy)
                for b in cluster.backends
            ]

    def unhealthy(self) -> int:
        """Backends this worker's checks hold out of rotation (`status`)."""
        return sum(1 for _, backend in self._checked_backends() if not backend.healthy)

    def snapshot(self) -> dict[str, int]:
        return {
            "health_check.success": self.success,
            "health_check.failure": self.failure,
            "health_check.up": self.up,
            "health_check.down": self.down,
            "udp.backend.health": self.udp_transitions,
        }

    def gauges(self) -> dict[str, int]:
        healthy = sum(1 for _, backend in self._checked_backends() if backend.healthy)
        return {"health_check.healthy_backends": healthy}

    def backend_gauges(self) -> list[tuple[str, str, str, int]]:
        return [
            (cluster_id, backend.backend_id, "health_check.healthy", int(backend.healthy))
            for cluster_id, backend in self._checked_backends()
        ]
