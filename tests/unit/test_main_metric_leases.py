"""Metric detail leases (dataplane/main/metric_leases.py): sozu 2.1's bounds and arithmetic."""

from __future__ import annotations

import pytest

from dataplane.command.messages import MetricDetail, SetMetricDetail
from dataplane.main.metric_leases import LeaseError, MetricLeases

CLUSTER, BACKEND, PROCESS = (
    MetricDetail.DETAIL_CLUSTER,
    MetricDetail.DETAIL_BACKEND,
    MetricDetail.DETAIL_PROCESS,
)


def lease(client: str, detail: MetricDetail | None = BACKEND, **more: object) -> SetMetricDetail:
    return SetMetricDetail(client_id=client, detail=detail, **more)  # type: ignore[arg-type]


def test_the_effective_detail_is_the_finest_of_the_configured_one_and_the_leases() -> None:
    leases = MetricLeases(CLUSTER)
    assert leases.effective == CLUSTER
    assert leases.apply(lease("top", PROCESS), now=0) == 60  # coarser: changes nothing
    assert leases.effective == CLUSTER
    assert leases.apply(lease("debug", BACKEND, ttl_seconds=10), now=0) == 10
    assert leases.effective == BACKEND
    assert leases.expire(now=9.9) == []
    assert leases.expire(now=10) == ["debug"]
    assert leases.effective == CLUSTER and len(leases) == 1


def test_a_lease_is_renewed_by_sending_it_again_and_given_up_with_clear() -> None:
    leases = MetricLeases(CLUSTER)
    leases.apply(lease("top", ttl_seconds=5), now=0)
    leases.apply(lease("top", ttl_seconds=5), now=4)
    assert leases.expire(now=6) == [] and leases.effective == BACKEND
    assert leases.apply(SetMetricDetail(client_id="top", clear=True), now=7) is None
    assert leases.effective == CLUSTER and len(leases) == 0


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (lease(""), "client_id"),
        (lease("x" * 65), "client_id"),
        (lease("a", ttl_seconds=301), "ttl_seconds"),
        (lease("a", ttl_seconds=0), "ttl_seconds"),
        (lease("a", None), "needs a detail"),
    ],
)
def test_sozus_bounds_are_refused_with_the_reason(request_: SetMetricDetail, reason: str) -> None:
    with pytest.raises(LeaseError, match=reason):
        MetricLeases(CLUSTER).apply(request_, now=0)


def test_at_most_64_leases_but_a_holder_may_always_renew() -> None:
    leases = MetricLeases(CLUSTER)
    for n in range(64):
        leases.apply(lease(f"c{n}"), now=0)
    with pytest.raises(LeaseError, match="too many"):
        leases.apply(lease("one-more"), now=0)
    leases.apply(lease("c0"), now=1)
