"""`backend list` and `cluster list -i`: backends with the workers' health-check verdicts."""

from __future__ import annotations

import io

import pytest

from dataplane.cli import output
from dataplane.cli.backend_health import health_word
from dataplane.command.address import SocketAddress
from dataplane.command.messages import AddBackend, Cluster, LoadBalancingParams
from dataplane.command.responses import (
    BackendHealth,
    ClusterInformation,
    ClusterInformations,
    Response,
    ResponseContent,
    WorkerResponses,
)

pytestmark = pytest.mark.timeout(10)

A = SocketAddress.parse("127.0.0.1:3001")
B = SocketAddress.parse("127.0.0.1:3002")


def gathered(*workers: list[BackendHealth]) -> Response:
    """main's answer (the backends) and one answer per worker (its verdicts)."""
    config = Cluster(cluster_id="app")
    backends = [
        AddBackend(cluster_id="app", backend_id="a", address=A),
        AddBackend(
            cluster_id="app",
            backend_id="b",
            address=B,
            backup=True,
            load_balancing_parameters=LoadBalancingParams(weight=10),
        ),
    ]

    def answer(health: list[BackendHealth]) -> ResponseContent:
        info = ClusterInformation(configuration=config, backends=backends, backend_health=health)
        return ResponseContent.of(clusters=ClusterInformations(vec=[info]))

    answers = {str(n): answer(health) for n, health in enumerate(workers)}
    answers["main"] = answer([])
    return Response.ok(content=ResponseContent.of(worker_responses=WorkerResponses(map=answers)))


def rows(response: Response, show: str = "backends") -> list[list[str]]:
    out = io.StringIO()
    output.SHOW[show](response, out)
    return [line.split() for line in out.getvalue().splitlines()]


def test_words() -> None:
    assert health_word(None) == health_word([]) == "-"
    assert health_word([True, True]) == "healthy"
    assert health_word([False]) == "unhealthy"
    assert health_word([False, True, True]) == "unhealthy in 1/3 workers"


def test_backend_list_shows_each_backend_s_verdict() -> None:
    one = [
        BackendHealth(backend_id="a", address=A, healthy=True),
        BackendHealth(backend_id="b", address=B, healthy=False),
    ]
    table = rows(gathered(one, one))
    assert table[0] == ["CLUSTER", "BACKEND", "ADDRESS", "WEIGHT", "BACKUP", "HEALTH"]
    assert table[1] == ["app", "a", "127.0.0.1:3001", "100", "no", "healthy"]
    assert table[2] == ["app", "b", "127.0.0.1:3002", "10", "yes", "unhealthy"]


def test_workers_that_disagree_and_clusters_without_checks() -> None:
    healthy = [BackendHealth(backend_id="a", address=A, healthy=True)]
    sick = [BackendHealth(backend_id="a", address=A, healthy=False)]
    table = rows(gathered(healthy, sick))
    assert table[1][5:] == ["unhealthy", "in", "1/2", "workers"]
    assert table[2][-1] == "-"  # no verdict for b: not checked
    assert rows(gathered([], []))[1][-1] == "-"


def test_cluster_list_by_id_shows_the_health_column_too() -> None:
    table = rows(gathered([BackendHealth(backend_id="a", address=A, healthy=False)]), "clusters")
    assert ["BACKEND", "ADDRESS", "WEIGHT", "BACKUP", "HEALTH"] in table
    assert ["a", "127.0.0.1:3001", "100", "no", "unhealthy"] in table


def test_an_answer_without_clusters_is_shown_as_a_message() -> None:
    out = io.StringIO()
    output.show_backends(Response.failure("no such cluster"), out)
    assert "no such cluster" in out.getvalue()
