"""Backends with their health, from a gathered cluster query (`cluster list -i`, `backend
list`): main's answer names the backends, each worker's answer carries its health-check
verdicts (`ClusterInformation.backend_health`, a pysozu addition).

Each worker runs the checks itself (as sozu), so the verdicts are per worker: HEALTH reads
`healthy` or `unhealthy` when the workers agree, `unhealthy in N/M workers` when they do not
(a verdict changed less than one interval ago), `-` when the cluster has no health check.
sozu's CLI shows no verdict; its words are those of its events, HEALTH_CHECK_HEALTHY /
HEALTH_CHECK_UNHEALTHY.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.responses import ClusterInformation, ResponseContent

Verdicts = dict[tuple[str, SocketAddress], list[bool]]


def verdicts(cluster_id: str, workers: Mapping[str, ResponseContent]) -> Verdicts:
    """Every worker's verdict on each backend of `cluster_id`."""
    found: Verdicts = {}
    for content in workers.values():
        if content.kind != "clusters":
            continue
        for info in content.value.vec:
            config = info.configuration
            if config is None or config.cluster_id != cluster_id:
                continue
            for entry in info.backend_health:
                found.setdefault((entry.backend_id, entry.address), []).append(entry.healthy)
    return found


def health_word(seen: list[bool] | None) -> str:
    if not seen:
        return "-"
    bad = seen.count(False)
    if bad == 0:
        return "healthy"
    if bad == len(seen):
        return "unhealthy"
    return f"unhealthy in {bad}/{len(seen)} workers"


def backend_rows(
    info: ClusterInformation, workers: Mapping[str, ResponseContent]
) -> list[tuple[Any, ...]]:
    """BACKEND, ADDRESS, WEIGHT, BACKUP, HEALTH for each backend of one cluster."""
    cluster_id = info.configuration.cluster_id if info.configuration else ""
    seen = verdicts(cluster_id, workers)
    rows = []
    for backend in info.backends:
        params = backend.load_balancing_parameters
        weight = params.weight if params is not None else 100
        rows.append(
            (
                backend.backend_id,
                str(backend.address),
                weight,
                "yes" if backend.backup else "no",
                health_word(seen.get((backend.backend_id, backend.address))),
            )
        )
    return rows


BACKEND_HEADERS = ("BACKEND", "ADDRESS", "WEIGHT", "BACKUP", "HEALTH")
