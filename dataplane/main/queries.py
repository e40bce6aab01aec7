"""Answers read from main's state, or gathered from every worker plus main itself."""

from __future__ import annotations

from collections import Counter

from dataplane.command.messages import Empty, Request
from dataplane.command.responses import (
    ClusterHashes,
    ClusterInformations,
    HealthChecksList,
    RequestCounts,
    Response,
    ResponseContent,
    RunState,
    WorkerInfos,
    WorkerResponses,
)
from dataplane.command.state import ConfigState
from dataplane.main.jobs import Job
from dataplane.main.workers import WorkerPool


def status(pool: WorkerPool, timeout: float, main_description: str = "") -> Job:
    """Ask every worker; RUNNING if it answered OK in time, else NOT_ANSWERING.

    The message describes main itself (pid, version, restarts): WorkerInfos has no row for it.
    """
    workers = pool.live()
    # A worker the heartbeat already found silent is not waited for again (heartbeat.py).
    asked = [w for w in workers if not (w.booted and w.run_state == RunState.NOT_ANSWERING)]
    gather = yield pool.scatter(Request.of(status=Empty()), timeout, asked)
    infos = []
    for worker in workers:
        if worker.id in gather.answers:
            pool.adopt_info(worker, gather.answers[worker.id])
        state = worker.run_state
        if state in (RunState.RUNNING, RunState.NOT_ANSWERING):
            state = RunState.RUNNING if worker.id in gather.answers else RunState.NOT_ANSWERING
        infos.append(worker.info(state))
    return Response.ok(main_description, ResponseContent.of(workers=WorkerInfos(vec=infos)))


def list_workers(pool: WorkerPool) -> Response:
    return Response.ok(content=ResponseContent.of(workers=WorkerInfos(vec=pool.infos())))


def from_state(state: ConfigState, request: Request) -> Response:
    """Verbs main answers alone, from its state."""
    body = request.body
    match request.verb:
        case "list_frontends":
            content = ResponseContent.of(frontend_list=state.list_frontends(body))
        case "list_listeners":
            content = ResponseContent.of(listeners_list=state.list_listeners())
        case "query_certificates_from_the_state":
            content = ResponseContent.of(
                certificates_with_fingerprints=state.query_certificates(body)
            )
        case "query_health_checks":
            checks = state.health_checks
            if body.cluster_id is not None:
                checks = {k: v for k, v in checks.items() if k == body.cluster_id}
            content = ResponseContent.of(health_checks_list=HealthChecksList(map=checks))
        case _:
            raise AssertionError(f"{request.verb} is not answered from the state")
    return Response.ok(content=content)


def count_requests(counts: Counter[str]) -> Response:
    return Response.ok(content=ResponseContent.of(request_counts=RequestCounts(map=dict(counts))))


def main_answer(state: ConfigState, request: Request) -> ResponseContent:
    """Main's own entry in a gathered query."""
    body = request.body
    match request.verb:
        case "query_cluster_by_id":
            info = state.cluster_information(body)
            return ResponseContent.of(clusters=ClusterInformations(vec=[info] if info else []))
        case "query_clusters_by_domain":
            found = state.clusters_by_domain(body.hostname, body.path)
            return ResponseContent.of(clusters=ClusterInformations(vec=found))
        case "query_clusters_hashes":
            return ResponseContent.of(cluster_hashes=ClusterHashes(map=state.cluster_hashes()))
        case "query_certificates_from_workers":
            return ResponseContent.of(certificates_by_address=state.certificates_by_address(body))
        case _:
            raise AssertionError(f"{request.verb} has no main answer")


def gathered(state: ConfigState, pool: WorkerPool, request: Request, timeout: float) -> Job:
    """Every worker's answer by worker id, plus `main`; failed workers named in the message."""
    gather = yield pool.scatter(request, timeout)
    answers = {str(worker_id): content for worker_id, content in gather.contents().items()}
    answers["main"] = main_answer(state, request)
    message = f"some workers did not answer: {gather.failure_message()}" if gather.failures else ""
    content = ResponseContent.of(worker_responses=WorkerResponses(map=answers))
    return Response.ok(message, content)


def forwarded(pool: WorkerPool, request: Request, timeout: float) -> Job:
    """Runtime settings kept by workers only (not in the state): every worker must agree."""
    gather = yield pool.scatter(request, timeout)
    if gather.failures:
        return Response.failure(gather.failure_message())
    contents = list(gather.contents().values())
    return Response.ok(
        "Successfully applied request to all workers", contents[0] if contents else None
    )
