"""Merging the workers' figures for `query_metrics`."""

from __future__ import annotations

import pytest

from dataplane.command.messages import QueryMetricsOptions
from dataplane.command.responses import (
    ClusterMetrics,
    FilteredMetrics,
    FilteredMetricsInner,
    Percentiles,
    WorkerMetrics,
)
from dataplane.main.metrics_query import aggregate

pytestmark = pytest.mark.timeout(10)


def figure(count: int | None = None, gauge: int | None = None) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(count=count, gauge=gauge))


PERCENTILES = FilteredMetrics(
    inner=FilteredMetricsInner(
        percentiles=Percentiles(
            samples=1, p_50=1, p_90=1, p_99=1, p_99_9=1, p_99_99=1, p_99_999=1, p_100=1, sum=1
        )
    )
)
WORKERS = {
    "0": WorkerMetrics(
        proxy={"requests": figure(count=3), "connections": figure(gauge=2), "time": PERCENTILES},
        clusters={"app": ClusterMetrics(cluster={"hits": figure(count=1)})},
    ),
    "1": WorkerMetrics(proxy={"requests": figure(count=4), "connections": figure(gauge=1)}),
}


def test_counts_and_gauges_are_summed_and_the_rest_left_out() -> None:
    merged = aggregate(QueryMetricsOptions(), WORKERS).content
    assert merged is not None
    proxying = merged.value.proxying
    assert proxying["requests"].inner.count == 7
    assert proxying["connections"].inner.gauge == 3
    assert "time" not in proxying


def test_per_worker_view_and_name_filter() -> None:
    answer = aggregate(QueryMetricsOptions(workers=True, metric_names=["requests"]), WORKERS)
    assert answer.content is not None
    workers = answer.content.value.workers
    assert set(workers) == {"0", "1"}
    assert set(workers["0"].proxy) == {"requests"}
    assert "app" in workers["0"].clusters


def test_list_names_what_exists() -> None:
    answer = aggregate(QueryMetricsOptions(list=True), WORKERS)
    assert answer.content is not None
    available = answer.content.value
    assert available.proxy_metrics == ["connections", "requests", "time"]
    assert available.cluster_metrics == ["hits"]
