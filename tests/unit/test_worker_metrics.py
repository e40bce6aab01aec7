"""The worker's figures: what a request records, what a snapshot shows at each detail level."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from dataplane.command.codec import decode, encode
from dataplane.command.messages import MetricDetail, QueryMetricsOptions
from dataplane.command.responses import FilteredMetrics, WorkerMetrics
from dataplane.proxy.observability.metrics import BOUNDS_MICROSECONDS, MetricsRegistry

ALL = QueryMetricsOptions()
BACKEND = MetricDetail.DETAIL_BACKEND


def count(metrics: dict[str, FilteredMetrics], key: str) -> int | None:
    return metrics[key].inner.count


def two_requests() -> MetricsRegistry:
    registry = MetricsRegistry()
    registry.count_request("api", 200, "api-0", 0.002, 0.0015, 100, 1000)
    registry.count_request("api", 503, "api-1", 0.2, 0.19, 50, 10)
    registry.count_request(None, 404, None, 0.0001, 0.0, 30, 80)
    return registry


def test_process_figures_sum_every_cluster_and_unrouted_requests() -> None:
    proxy = two_requests().snapshot(MetricDetail.DETAIL_PROCESS, ALL).proxy
    assert count(proxy, "http.requests") == 3
    assert count(proxy, "http.status.2xx") == 1
    assert count(proxy, "http.status.4xx") == 1
    assert count(proxy, "http.status.5xx") == 1
    assert "http.status.3xx" not in proxy
    assert count(proxy, "bytes_in") == 180
    assert count(proxy, "bytes_out") == 1090


def test_histograms_are_cumulative_in_microseconds() -> None:
    proxy = two_requests().snapshot(MetricDetail.DETAIL_PROCESS, ALL).proxy
    histogram = proxy["request_time"].inner.histogram
    assert histogram is not None
    assert [b.le for b in histogram.buckets] == list(BOUNDS_MICROSECONDS)
    by_bound = {b.le: b.count for b in histogram.buckets}
    assert by_bound[500] == 1  # 0.1 ms
    assert by_bound[2500] == 2  # + 2 ms
    assert by_bound[250_000] == 3  # + 200 ms
    assert histogram.count == 3
    assert histogram.sum == 202_100
    upstream = proxy["backend_response_time"].inner.histogram
    assert upstream is not None and upstream.count == 2  # the 404 never reached a backend


def test_a_value_on_a_bound_falls_in_that_bucket_and_beyond_the_last_only_in_count() -> None:
    registry = MetricsRegistry()
    registry.count_request("a", 200, None, 0.001, 0.0, 0, 0)
    registry.count_request("a", 200, None, 120.0, 0.0, 0, 0)
    histogram = registry.snapshot(BACKEND, ALL).clusters["a"].cluster["request_time"]
    assert histogram.inner.histogram is not None
    by_bound = {b.le: b.count for b in histogram.inner.histogram.buckets}
    assert by_bound[500] == 0 and by_bound[1000] == 1 and by_bound[60_000_000] == 1
    assert histogram.inner.histogram.count == 2


@pytest.mark.parametrize(
    ("detail", "clusters", "backends"),
    [
        (MetricDetail.DETAIL_PROCESS, False, False),
        (MetricDetail.DETAIL_FRONTEND, False, False),
        (MetricDetail.DETAIL_CLUSTER, True, False),
        (MetricDetail.DETAIL_BACKEND, True, True),
    ],
)
def test_detail_levels_bound_what_is_reported(
    detail: MetricDetail, clusters: bool, backends: bool
) -> None:
    snapshot = two_requests().snapshot(detail, ALL)
    assert bool(snapshot.clusters) == clusters
    if clusters:
        assert list(snapshot.clusters) == ["api"]  # requests of no cluster stay process-wide
        assert bool(snapshot.clusters["api"].backends) == backends


def test_backend_figures() -> None:
    registry = two_requests()
    registry.cluster("api").connect_failed("api-1")
    registry.cluster("api").retried("api-1")
    cluster = registry.snapshot(BACKEND, ALL).clusters["api"]
    backends = {b.backend_id: b.metrics for b in cluster.backends}
    assert count(backends["api-1"], "http.status.5xx") == 1
    assert count(backends["api-1"], "backend.connections.error") == 1
    assert count(backends["api-1"], "backend.connect.retries") == 1
    assert count(backends["api-0"], "bytes_out") == 1000
    assert count(cluster.cluster, "backend.connections.error") == 1
    upstream = cluster.cluster["backend_response_time"].inner.histogram
    assert upstream is not None and upstream.count == 2


def test_query_options_filter_clusters_backends_and_names() -> None:
    registry = two_requests()
    registry.count_request("web", 200, "web-0", 0.01, 0.01, 1, 1)
    options = QueryMetricsOptions(
        cluster_ids=["api"], backend_ids=["api-0"], metric_names=["bytes_in"]
    )
    snapshot = registry.snapshot(BACKEND, options)
    assert list(snapshot.clusters) == ["api"]
    assert [b.backend_id for b in snapshot.clusters["api"].backends] == ["api-0"]
    assert list(snapshot.clusters["api"].cluster) == ["bytes_in"]
    assert list(snapshot.proxy) == ["bytes_in"]
    assert registry.snapshot(BACKEND, QueryMetricsOptions(no_clusters=True)).clusters == {}


def test_removed_cluster_disappears_but_process_totals_never_go_back() -> None:
    registry = two_requests()
    registry.remove_cluster("api")
    snapshot = registry.snapshot(BACKEND, ALL)
    assert snapshot.clusters == {}
    assert count(snapshot.proxy, "http.requests") == 3
    assert count(snapshot.proxy, "bytes_out") == 1090
    histogram = snapshot.proxy["request_time"].inner.histogram
    assert histogram is not None and histogram.count == 3


def test_removed_backend_disappears_but_cluster_totals_stay() -> None:
    registry = two_requests()
    registry.remove_backend("api", "api-1")
    registry.remove_backend("api", "unknown")
    registry.remove_backend("unknown", "api-0")
    cluster = registry.snapshot(BACKEND, ALL).clusters["api"]
    assert [b.backend_id for b in cluster.backends] == ["api-0"]
    assert count(cluster.cluster, "http.status.5xx") == 1
    upstream = cluster.cluster["backend_response_time"].inner.histogram
    assert upstream is not None and upstream.count == 2


def test_labelled_process_figures() -> None:
    registry = MetricsRegistry()
    listener = registry.listener("127.0.0.1:8080")
    listener.opened()
    listener.opened()
    listener.closed()
    registry.answer(404)
    registry.answer(404)
    registry.tls_handshake("TLSv1.3")
    registry.tls_failure(None)
    proxy = registry.snapshot(MetricDetail.DETAIL_PROCESS, ALL).proxy
    assert count(proxy, "listener.accepted:127.0.0.1:8080") == 2
    assert proxy["listener.active:127.0.0.1:8080"].inner.gauge == 1
    assert count(proxy, "http.answers:404") == 2
    assert count(proxy, "tls.handshakes:TLSv1.3") == 1
    assert count(proxy, "tls.handshake.failed:unknown") == 1
    registry.remove_listener("127.0.0.1:8080")
    proxy = registry.snapshot(MetricDetail.DETAIL_PROCESS, ALL).proxy
    assert not any(key.startswith("listener.") for key in proxy)


def test_sources_are_sampled_at_snapshot_time() -> None:
    registry = MetricsRegistry()
    in_use = [3]
    registry.gauge_sources.append(lambda: {"buffer.in_use": in_use[0]})
    registry.counter_sources.append(lambda: {"access_logs.dropped": 7})
    registry.backend_gauge_sources.append(lambda: [("api", "api-9", "circuit.open", 1)])
    in_use[0] = 5
    snapshot = registry.snapshot(BACKEND, ALL)
    assert snapshot.proxy["buffer.in_use"].inner.gauge == 5
    assert count(snapshot.proxy, "access_logs.dropped") == 7
    assert snapshot.clusters == {}  # a gauge alone does not create a cluster
    registry.count_request("api", 200, "api-0", 0.01, 0.01, 1, 1)
    backends = registry.snapshot(BACKEND, ALL).clusters["api"].backends
    idle = {b.backend_id: b.metrics for b in backends}["api-9"]
    assert idle == {"circuit.open": msgspec.convert({"inner": {"GAUGE": 1}}, FilteredMetrics)}


def test_clear_starts_again_from_zero_and_keeps_sources() -> None:
    registry = two_requests()
    registry.gauge_sources.append(lambda: {"buffer.in_use": 1})
    registry.clear()
    snapshot = registry.snapshot(BACKEND, ALL)
    assert count(snapshot.proxy, "http.requests") == 0
    assert snapshot.clusters == {}
    assert snapshot.proxy["buffer.in_use"].inner.gauge == 1


def test_snapshot_travels_on_the_wire() -> None:
    snapshot = two_requests().snapshot(BACKEND, ALL)
    assert decode(encode(snapshot), WorkerMetrics) == snapshot


def test_available_lists_names_without_labels() -> None:
    registry = two_requests()
    registry.listener("127.0.0.1:80").opened()
    available = registry.available()
    assert "listener.accepted" in available.proxy_metrics
    assert "request_time" in available.cluster_metrics


def test_a_batch_of_request_ends_counts_as_each_request_would() -> None:
    """`count_requests` keeps its sums per run of one cluster and backend: batches of mixed
    clusters, backends and statuses count as the same requests one at a time."""
    rng = random.Random(7)
    clusters = [SimpleNamespace(cluster_id=name) for name in ("api", "web")]
    ends = []
    for _ in range(500):
        routed = rng.choice([*clusters, None])
        backend_id = None if routed is None else rng.choice([None, "b0", "b1"])
        started = rng.uniform(0.0, 100.0)
        response_at = rng.choice([None, started + rng.uniform(0.0, 3.0)])
        now = started + rng.uniform(0.0, 5.0)
        status, bytes_in, bytes_out = rng.choice([0, 101, 200, 304, 404, 503]), 30, 400
        ends.append(
            (now, started, response_at, status, None, routed, backend_id, bytes_in, bytes_out,
             b"", None)
        )  # fmt: skip
    batched, one_by_one = MetricsRegistry(), MetricsRegistry()
    batched.count_requests(ends[:200])  # two batches, as the worker would
    batched.count_requests(ends[200:])
    for end in ends:
        one_by_one.count_requests([end])
    for snapshot in (batched, one_by_one):
        assert sum(sum(f.status) for f in snapshot.clusters.values()) == 500
    assert encode(batched.snapshot(BACKEND, ALL)) == encode(one_by_one.snapshot(BACKEND, ALL))


def test_a_metrics_query_counts_every_request_that_ended_before_it() -> None:
    """The worker counts request ends in batches; a command from main settles them first."""
    from dataplane.command.messages import MetricsConfiguration, Request, WorkerRequest
    from dataplane.proxy.worker.commands import CommandHandler
    from dataplane.proxy.worker.request_ends import RequestEnds

    sent: list[Any] = []
    loop: Any = SimpleNamespace(
        now=10.0,
        metrics=MetricsRegistry(),
        metrics_enabled=True,
        metric_detail=BACKEND,
        access_log=None,
        error_access_log=None,
        access_logs=None,
        ended=None,
        send=sent.append,
    )
    loop.request_ends = RequestEnds(loop)
    loop.request_ends.follow()
    routed = SimpleNamespace(cluster_id="api")
    for _ in range(3):  # as HttpSession._record leaves them: not counted yet
        loop.ended.append((10.0, 9.99, 9.995, 200, None, routed, "api-0", 10, 20, b"", None))
    handler = CommandHandler(loop)
    handler.handle(WorkerRequest(id="q", content=Request.of(query_metrics=ALL)))
    (response,) = sent
    assert count(response.content.value.clusters["api"].cluster, "http.requests") == 3
    handler.handle(
        WorkerRequest(id="off", content=Request.of(configure_metrics=MetricsConfiguration.DISABLED))
    )
    assert loop.ended is None  # nothing wants request ends: the session leaves none
