"""The glue of observability: merged `query_metrics`, circuit breaker transitions. (The access
log's is in test_access_log_worker.py; end to end: tests/integration/test_observability_*.py.)"""

from __future__ import annotations

import random
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.messages import MetricDetail, QueryMetricsOptions
from dataplane.main.metrics_query import aggregate
from dataplane.proxy.balancing.backend import MAX_CONNECT_TRIES, Backend
from dataplane.proxy.observability.metrics import MetricsRegistry


def worker_figures(requests: int, seconds: float) -> Any:
    registry = MetricsRegistry()
    registry.listener("127.0.0.1:80").opened()
    for _ in range(requests):
        registry.count_request("app", 200, "app-1", seconds, seconds, 100, 200)
    return registry.snapshot(MetricDetail.DETAIL_BACKEND, QueryMetricsOptions())


def test_merged_view_sums_counts_and_histograms_of_every_worker() -> None:
    per_worker = {"0": worker_figures(2, 0.001), "1": worker_figures(3, 0.2)}
    merged = aggregate(QueryMetricsOptions(), per_worker).content.value  # type: ignore[union-attr]
    assert merged.proxying["http.status.2xx"].inner.count == 5
    assert merged.proxying["listener.accepted:127.0.0.1:80"].inner.count == 2
    histogram = merged.proxying["request_time"].inner.histogram
    assert histogram.count == 5 and histogram.sum == 2 * 1000 + 3 * 200_000
    by_bound = {bucket.le: bucket.count for bucket in histogram.buckets}
    assert by_bound[1000] == 2 and by_bound[250_000] == 5  # cumulative, as each worker's
    app = merged.clusters["app"]
    assert app.cluster["http.requests"].inner.count == 5
    assert [b.backend_id for b in app.backends] == ["app-1"]
    assert app.backends[0].metrics["bytes_out"].inner.count == 1000


def test_names_are_listed_and_filtered_without_their_labels() -> None:
    per_worker = {"0": worker_figures(1, 0.001)}
    listed = aggregate(QueryMetricsOptions(list=True), per_worker).content.value  # type: ignore[union-attr]
    assert "listener.accepted" in listed.proxy_metrics
    assert not any(":" in name for name in listed.proxy_metrics)
    assert "request_time" in listed.cluster_metrics
    only = QueryMetricsOptions(metric_names=["listener.accepted"], no_clusters=True)
    merged = aggregate(only, per_worker).content.value  # type: ignore[union-attr]
    assert set(merged.proxying) == {"listener.accepted:127.0.0.1:80"}
    assert merged.clusters == {}


def test_the_breaker_reports_opening_and_closing_once() -> None:
    backend = Backend("b", SocketAddress.parse("127.0.0.1:1"), rng=random.Random(1))
    now, opened = 0.0, []
    for _ in range(MAX_CONNECT_TRIES + 2):
        opened.append(backend.connect_failed(now))
        assert not backend.connect_failed(now)  # during the backoff: the same outage
        now = backend.retry_at
    assert opened == [False] * (MAX_CONNECT_TRIES - 1) + [True, False, False]
    assert backend.connect_succeeded(0.001, now) is True
    assert backend.connect_succeeded(0.001, now) is False
