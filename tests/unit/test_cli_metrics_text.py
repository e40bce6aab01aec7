"""`metrics get`'s text (sozu's layout), drawn from fixed figures (no sockets)."""

from __future__ import annotations

import io

from dataplane.cli import metrics_text
from dataplane.command.responses import (
    AggregatedMetrics,
    BackendMetrics,
    Bucket,
    ClusterMetrics,
    FilteredHistogram,
    FilteredMetrics,
    FilteredMetricsInner,
    WorkerMetrics,
)


def count(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(count=value))


def gauge(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(gauge=value))


def figures() -> dict[str, FilteredMetrics]:
    """4 requests: 3 under 0.5 ms, 1 under 1 ms (cumulative buckets, µs), 4 ms in all."""
    buckets = [Bucket(le=500, count=3), Bucket(le=1000, count=4), Bucket(le=2500, count=4)]
    histogram = FilteredHistogram(sum=4000, count=4, buckets=buckets)
    return {
        "http.requests": count(4),
        "http.status.5xx": count(0),
        "request_time": FilteredMetrics(inner=FilteredMetricsInner(histogram=histogram)),
    }


def merged() -> AggregatedMetrics:
    backend = BackendMetrics(backend_id="c0-1", metrics=figures())
    return AggregatedMetrics(
        proxying={**figures(), "client.connections": gauge(7)},
        clusters={"c0": ClusterMetrics(cluster=figures(), backends=[backend])},
    )


def test_metrics_get_prints_cluster_and_backend_sections() -> None:
    out = io.StringIO()
    metrics_text.show_aggregated(merged(), out)
    text = out.getvalue()
    assert "\nPROXYING\n========\n" in text
    assert "\nClusters\n========\n" in text
    assert "\nCluster c0\n----------\n" in text and "\nc0/c0-1\n-------\n" in text
    cluster = text.split("Cluster c0")[1].split("c0/c0-1")[0]
    assert "http.requests" in cluster and "http.status.5xx" in cluster
    histogram_row = next(line for line in cluster.splitlines() if line.startswith("request_time"))
    assert histogram_row.split() == ["request_time", "4", "4.0", "<=0.5", "<=1.0", "<=1.0"]
    gauge_row = next(line for line in text.splitlines() if line.startswith("client.connections"))
    assert gauge_row.split() == ["client.connections", "7"]


def test_metrics_get_per_worker_and_empty() -> None:
    out = io.StringIO()
    metrics_text.show_aggregated(AggregatedMetrics(), out)
    assert out.getvalue() == "no metrics\n"
    workers = {"1": WorkerMetrics(proxy={"timers": gauge(2)}), "0": WorkerMetrics()}
    out = io.StringIO()
    metrics_text.show_aggregated(AggregatedMetrics(workers=workers), out)
    assert out.getvalue().index("Worker 0") < out.getvalue().index("Worker 1")
    assert "(no figures)" in out.getvalue()


def test_a_histogram_in_the_last_bucket_reads_above_the_last_bound() -> None:
    histogram = FilteredHistogram(sum=90_000_000, count=1, buckets=[Bucket(le=60_000_000, count=0)])
    assert metrics_text.bound(histogram, 0.5) == ">60000"
    assert metrics_text.bound(FilteredHistogram(sum=0, count=0), 0.5) == "-"
