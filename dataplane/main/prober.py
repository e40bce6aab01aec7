"""One health prober for the whole proxy: which worker probes, and its verdicts relayed.

Every worker keeps the health checks of its clusters, but only the prober probes, so a backend
sees one probe per interval whatever the number of workers (issue 18; proxy/LIFECYCLE.md).
Main:

- names the prober (`reconsider`): the worker already probing while it is RUNNING, else the
  booted RUNNING worker with the lowest id. `set_health_prober` goes to the former prober
  (`active = false`) and the new one (`active = true`) when the choice changes: a worker
  booted, died (kill -9 included: main sees its channel close or its exit), or was retired
  (`upgrade_worker` stops it); to every worker once after a main upgrade. A worker started by
  main starts inactive, so none probes before main chose.
- relays the prober's verdicts (`on_event`): its HEALTH_CHECK_HEALTHY / UNHEALTHY events
  become `set_backend_health` requests to every other live worker, whose flags and gauges
  follow. Verdict events from any other worker (a former prober's last ones) are not relayed.
- keeps the backends the prober found unhealthy (`unhealthy`: at most one entry per backend
  of the state) and replays them to each worker it starts, queued before anything else main
  sends it, so a new worker (a restart, an upgrade) does not route to a dead backend, and a
  new prober starts from them (its verdicts seeded: no flap back into rotation).
- forgets a verdict as the workers do (`on_change`): backend or cluster removed, check
  removed, or changed to another kind of probe.

Both requests are worker-only (`WORKER_ONLY_VERBS`): refused from command-socket clients, no
part of the state (save_state never writes them, load_state refuses them). The prober and
the verdicts travel across a main upgrade in `UpgradeData`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Request, SetBackendHealth, SetHealthProber
from dataplane.command.responses import Event, EventKind, RunState
from dataplane.command.state import ConfigState
from dataplane.main.tasks import Gather
from dataplane.main.workers import Worker, WorkerPool
from dataplane.proxy.health.verdict import http_plan, udp_plan

log = logging.getLogger("pysozu.main.prober")

Key = tuple[str, str, SocketAddress]  # cluster id, backend id, address
VERDICTS = (EventKind.HEALTH_CHECK_HEALTHY, EventKind.HEALTH_CHECK_UNHEALTHY)
# Verbs after which a cluster's relayed verdicts may no longer hold (the check changed).
_CHECK_VERBS = ("add_cluster", "remove_cluster", "set_health_check", "remove_health_check")


def plan_kind(state: ConfigState, cluster_id: str) -> str | None:
    """The kind of probe the workers run for a cluster (None: no check), as
    `HealthChecks.plan` picks it: the UDP table before `health_check`."""
    cluster = state.clusters.get(cluster_id)
    if cluster is None:
        return None
    udp = cluster.udp.health if cluster.udp is not None else None
    plan = udp_plan(udp) if udp is not None else None
    if plan is None and cluster.health_check is not None:
        plan = http_plan(cluster.health_check)
    return plan.kind if plan is not None else None


class HealthProber:
    def __init__(self, pool: WorkerPool, state: ConfigState) -> None:
        self.pool = pool
        self.state = state
        self.prober: int | None = None
        self.unhealthy: dict[Key, str | None] = {}  # backend -> the kind of probe that said so
        pool.on_spawned = self.on_spawned
        pool.on_booted = lambda _worker: self.reconsider()
        pool.on_worker_gone = lambda _worker: self.reconsider()
        pool.on_worker_event = self.on_event

    # -- the choice -------------------------------------------------------------------------

    def choose(self) -> Worker | None:
        eligible = [w for w in self.pool.live() if w.booted and w.run_state == RunState.RUNNING]
        for worker in eligible:
            if worker.id == self.prober:
                return worker  # sticky: no move while the prober serves
        return min(eligible, key=lambda w: w.id, default=None)

    def reconsider(self, tell_all: bool = False) -> None:
        """Name the prober again; tell the workers concerned (`tell_all`: every booted one)."""
        if self.pool.stopping:
            return
        chosen = self.choose()
        chosen_id = chosen.id if chosen is not None else None
        previous = self.prober
        if chosen_id == previous and not tell_all:
            return
        self.prober = chosen_id
        for worker in self.pool.workers.values():
            worker.health_prober = worker.id == chosen_id
        booted = [w for w in self.pool.live() if w.booted and w.id != chosen_id]
        if not tell_all:
            booted = [w for w in booted if w.id == previous]
        self._send(Request.of(set_health_prober=SetHealthProber(active=False)), booted)
        if chosen is not None:
            self._send(Request.of(set_health_prober=SetHealthProber(active=True)), [chosen])
            if chosen_id != previous:
                log.info("worker %d runs the health probes (before: %s)", chosen_id, previous)
        elif previous is not None:
            log.warning("no running worker to run the health probes: none runs them")

    # -- verdicts ---------------------------------------------------------------------------

    def on_event(self, worker: Worker, event: Event) -> None:
        if event.kind not in VERDICTS or worker.id != self.prober:
            return
        if event.cluster_id is None or event.backend_id is None or event.address is None:
            return
        healthy = event.kind == EventKind.HEALTH_CHECK_HEALTHY
        key = (event.cluster_id, event.backend_id, event.address)
        kind = plan_kind(self.state, event.cluster_id)
        if kind is None:  # the check went meanwhile: the workers dropped its verdicts
            self.unhealthy.pop(key, None)
            return
        if healthy:
            self.unhealthy.pop(key, None)
        else:
            self.unhealthy[key] = kind
        others = [w for w in self.pool.live() if w.id != worker.id]
        self._send(_relay(key, healthy), others)

    def on_spawned(self, worker: Worker) -> None:
        """Replay the verdicts to a worker main just started (queued until it booted)."""
        for key in self.unhealthy:
            self._send(_relay(key, False), [worker])

    def on_change(self, request: Request) -> None:
        """A state change main applied: drop the verdicts the workers dropped with it."""
        verb, body = request.verb, request.body
        if verb == "remove_backend":
            self.unhealthy.pop((body.cluster_id, body.backend_id, body.address), None)
        elif verb in _CHECK_VERBS:
            cluster_id = body if isinstance(body, str) else body.cluster_id
            kind = plan_kind(self.state, cluster_id)
            for key, found in list(self.unhealthy.items()):
                if key[0] == cluster_id and found != kind:
                    del self.unhealthy[key]

    def handed(self) -> list[SetBackendHealth]:
        """The verdicts for the next main (UpgradeData)."""
        return [_relay(key, False).body for key in self.unhealthy]

    def adopt(self, prober: int | None, unhealthy: Iterable[SetBackendHealth]) -> None:
        """A main upgrade: the previous main's choice and verdicts (told at `start`)."""
        self.prober = prober
        for verdict in unhealthy:
            key = (verdict.cluster_id, verdict.backend_id, verdict.address)
            self.unhealthy[key] = plan_kind(self.state, verdict.cluster_id)

    def _send(self, request: Request, workers: list[Worker]) -> None:
        if workers:
            gather = self.pool.scatter(request, None, workers)
            gather.on_done = _log_failures


def _relay(key: Key, healthy: bool) -> Request:
    cluster_id, backend_id, address = key
    verdict = SetBackendHealth(
        cluster_id=cluster_id, backend_id=backend_id, address=address, healthy=healthy
    )
    return Request.of(set_backend_health=verdict)


def _log_failures(gather: Gather) -> None:
    if gather.failures:  # a worker from before this feature (a main upgrade) says so
        log.warning("%s: %s", gather.request.verb, gather.failure_message())
