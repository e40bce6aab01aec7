"""The worker's answers to main: state changes, queries, listeners, stops.

Every `WorkerRequest` gets exactly one final `WorkerResponse` with the same id. A state request
is tried on a copy of the ConfigState, then mirrored on the live proxy structures; only when
both succeed does the copy become the state, so a failure changes nothing. `soft_stop` is
answered once the last connection has drained, then the loop ends (exit 0).
"""

from __future__ import annotations

import gc
import logging
import os
from collections import Counter
from typing import Any

import dataplane
from dataplane.command.logs import LogTargetError, set_level
from dataplane.command.messages import (
    STATE_VERBS,
    ListenerType,
    MetricsConfiguration,
    Request,
    WorkerRequest,
)
from dataplane.command.responses import (
    ClusterHashes,
    ClusterInformations,
    MaxConnectionsPerIpLimit,
    RequestCounts,
    ResponseContent,
    ResponseStatus,
    RunState,
    WorkerInfo,
    WorkerInfos,
    WorkerResponse,
)
from dataplane.command.scm import ScmError
from dataplane.command.state import StateError
from dataplane.proxy.balancing.backend import Backend
from dataplane.proxy.mux import backend_events
from dataplane.proxy.tls.listener import apply_tls, certificates_by_address
from dataplane.proxy.worker.loop import Loop

log = logging.getLogger("dataplane.worker")


# Listener kinds the loop's own listeners serve (UDP ones: `loop.udp`).
_SERVED = (ListenerType.HTTP, ListenerType.HTTPS, ListenerType.TCP)


def _ok(request_id: str, content: ResponseContent | None = None) -> WorkerResponse:
    return WorkerResponse(id=request_id, status=ResponseStatus.OK, content=content)


def _failure(request_id: str, message: str) -> WorkerResponse:
    return WorkerResponse(id=request_id, status=ResponseStatus.FAILURE, message=message)


class CommandHandler:
    def __init__(self, loop: Loop, worker_id: int = 0) -> None:
        self.loop = loop
        self.worker_id = worker_id
        self.request_counts: Counter[str] = Counter()

    def handle(self, message: WorkerRequest) -> None:
        """Answer one request from main (now, or when a soft stop has drained)."""
        verb = message.content.verb
        self.request_counts[verb] += 1
        self.loop.request_ends.settle()  # what ended before this request counts before it
        try:
            response = self._dispatch(message.id, verb, message.content.body, message)
        except Exception as error:  # never let one request take the worker down
            log.exception("request %s (%s) failed", message.id, verb)
            response = _failure(message.id, f"{verb} failed in the worker: {error}")
        if response is not None:
            self.loop.send(response)

    def apply_state(self, message: WorkerRequest) -> None:
        """Boot: apply one request of the initial state (listeners are activated later).

        Main built this state with the same dispatch, so it is applied in place: a trial copy
        per request would make booting with N clusters cost O(N^2) (minutes at 10,000).
        """
        self._change_state(message, trial_copy=False)

    def _dispatch(
        self, request_id: str, verb: str, body: Any, message: WorkerRequest
    ) -> WorkerResponse | None:
        loop = self.loop
        if verb in STATE_VERBS:
            return self._state_request(request_id, verb, body, message)
        if verb == "status":  # main's `status` shows the version and open connections
            return _ok(request_id, ResponseContent.of(workers=WorkerInfos(vec=[self._info()])))
        if verb == "soft_stop":
            loop.soft_stop(lambda: self._stopped(request_id))
            return None
        if verb == "hard_stop":
            loop.running = False
            return _ok(request_id)
        if verb == "return_listen_sockets":
            loop.return_listen_sockets()
            return _ok(request_id)
        if verb == "query_clusters_hashes":
            hashes = ClusterHashes(map=loop.state.cluster_hashes())
            return _ok(request_id, ResponseContent.of(cluster_hashes=hashes))
        if verb == "query_cluster_by_id":
            info = loop.state.cluster_information(body)
            infos = ClusterInformations(vec=[info] if info is not None else [])
            for each in infos.vec:
                loop.health.annotate(each)  # this worker's health verdicts
            return _ok(request_id, ResponseContent.of(clusters=infos))
        if verb == "query_clusters_by_domain":
            found = loop.state.clusters_by_domain(body.hostname, body.path)
            for each in found:
                loop.health.annotate(each)
            return _ok(request_id, ResponseContent.of(clusters=ClusterInformations(vec=found)))
        if verb == "query_certificates_from_workers":
            served = certificates_by_address(loop.proxy, body)
            return _ok(request_id, ResponseContent.of(certificates_by_address=served))
        if verb == "count_requests":
            counts = RequestCounts(map=dict(self.request_counts))
            return _ok(request_id, ResponseContent.of(request_counts=counts))
        if verb == "query_metrics":  # main merges them (and lists the names for `list`)
            snapshot = loop.metrics.snapshot(loop.metric_detail, body)
            return _ok(request_id, ResponseContent.of(worker_metrics=snapshot))
        if verb == "set_metric_detail":
            if body.detail is not None:
                loop.metric_detail = body.detail
            return _ok(request_id)
        if verb == "set_health_prober":  # main names the one worker that probes
            loop.health.set_active(body.active)
            return _ok(request_id)
        if verb == "set_backend_health":  # the prober's verdict, relayed by main
            loop.health.relay(body)
            return _ok(request_id)
        if verb == "set_max_connections_per_ip":
            loop.proxy.max_connections_per_ip = max(0, body)
            return _ok(request_id)
        if verb == "query_max_connections_per_ip":
            limit = MaxConnectionsPerIpLimit(limit=loop.proxy.max_connections_per_ip)
            return _ok(request_id, ResponseContent.of(max_connections_per_ip_limit=limit))
        if verb == "logging":
            try:
                set_level(body)  # a sozu filter such as `info` or `sozu=debug,warn`
            except LogTargetError as error:
                return _failure(request_id, str(error))
            if loop.access_logs is not None:
                loop.access_logs.follow_level(logging.getLogger().level)
            return _ok(request_id)
        if verb == "configure_metrics":
            if body == MetricsConfiguration.CLEAR:
                loop.metrics.clear()
            else:
                loop.metrics_enabled = body == MetricsConfiguration.ENABLED
                loop.request_ends.follow()
            return _ok(request_id)
        return _failure(request_id, f"{verb} is not a worker request")

    def _state_request(
        self, request_id: str, verb: str, body: Any, message: WorkerRequest
    ) -> WorkerResponse:
        loop = self.loop
        try:
            if verb == "activate_listener":
                if body.from_scm:  # main sends one SCM message whatever the listener kind
                    loop.receive_scm()
                self._change_state(message)
                if body.proxy in _SERVED:
                    loop.activate(body.address)
                elif body.proxy == ListenerType.UDP:
                    loop.activate_udp(body.address)
            elif verb in ("deactivate_listener", "remove_listener"):
                if body.proxy in _SERVED:
                    loop.deactivate(body.address, getattr(body, "to_scm", False))
                elif body.proxy == ListenerType.UDP:
                    loop.deactivate_udp(body.address, getattr(body, "to_scm", False))
                self._change_state(message)
            else:
                self._change_state(message)
        except (StateError, ScmError, OSError) as error:
            return _failure(request_id, str(error))
        return _ok(request_id)

    def _change_state(self, message: WorkerRequest, trial_copy: bool = True) -> None:
        loop = self.loop
        if trial_copy and gc.get_freeze_count():
            gc.unfreeze()  # frozen at boot (boot.py): what this change drops can be collected
        trial = loop.state.copy() if trial_copy else loop.state
        trial.dispatch(message.content)
        content = message.content  # listener updates: the same merge (listener_update.py)
        leaving = _backend_of(loop, content) if content.verb == "remove_backend" else None
        try:
            loop.proxy.apply(content)
            loop.udp.apply(content)  # UDP listeners, frontends, flows (udp/proxy.py)
            loop.health.apply(content)  # health checks (health/checks.py)
            apply_tls(loop.proxy, content.verb, content.body)
        except Exception as error:
            raise StateError(f"{message.content.verb}: {error}") from None
        loop.state = trial
        body = message.content.body
        if message.content.verb == "remove_cluster":
            loop.metrics.remove_cluster(body)
        elif message.content.verb == "remove_backend":
            loop.metrics.remove_backend(body.cluster_id, body.backend_id)
            if leaving is not None:
                backend_events.backend_removed(loop, body.cluster_id, leaving)

    def _info(self) -> WorkerInfo:
        return WorkerInfo(
            id=self.worker_id,
            pid=os.getpid(),
            run_state=RunState.STOPPING if self.loop.stopping else RunState.RUNNING,
            version=dataplane.__version__,
            connections=len(self.loop.sessions),
            unhealthy_backends=self.loop.health.unhealthy(),
        )

    def _stopped(self, request_id: str) -> None:
        self.loop.send(_ok(request_id))
        self.loop.running = False


def _backend_of(loop: Loop, request: Request) -> Backend | None:
    """The live backend a `remove_backend` request names (None: not known here)."""
    body = request.body
    cluster = loop.proxy.clusters.get(body.cluster_id)
    if cluster is None:
        return None
    for backend in cluster.backends:
        if backend.backend_id == body.backend_id and backend.address == body.address:
            return backend
    return None
