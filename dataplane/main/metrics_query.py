"""`query_metrics`: every worker's figures, merged (or per worker with `workers=true`).

Workers answer with their `WorkerMetrics`. Merged as sozu merges them: counts, gauges and
histograms (bucket by bucket: every worker uses the same bounds) are summed by name, process
figures into `proxying`, cluster and backend figures into `clusters` (unless `no_clusters`).
`list=true` answers the metric names that exist, labels stripped (`listener.accepted`, not
`listener.accepted:127.0.0.1:80`): the names `--names` filters on, in both views.
"""

from __future__ import annotations

from dataplane.command.messages import QueryMetricsOptions, Request
from dataplane.command.responses import (
    AggregatedMetrics,
    AvailableMetrics,
    BackendMetrics,
    Bucket,
    ClusterMetrics,
    FilteredHistogram,
    FilteredMetrics,
    FilteredMetricsInner,
    Response,
    ResponseContent,
    WorkerMetrics,
)
from dataplane.main.jobs import Job
from dataplane.main.workers import WorkerPool


def _merge(into: dict[str, FilteredMetrics], metrics: dict[str, FilteredMetrics]) -> None:
    """Add `metrics` into `into`; figures that cannot be summed (percentiles) are left out."""
    for name, metric in metrics.items():
        inner = metric.inner
        old = into.get(name)
        merged = old.inner if old is not None else FilteredMetricsInner()
        if inner.count is not None and merged.histogram is None and merged.gauge is None:
            into[name] = _count((merged.count or 0) + inner.count)
        elif inner.gauge is not None and merged.histogram is None and merged.count is None:
            into[name] = FilteredMetrics(
                inner=FilteredMetricsInner(gauge=(merged.gauge or 0) + inner.gauge)
            )
        elif inner.histogram is not None and merged.count is None and merged.gauge is None:
            into[name] = _histogram(merged.histogram, inner.histogram)


def _count(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(count=value))


def _histogram(a: FilteredHistogram | None, b: FilteredHistogram) -> FilteredMetrics:
    buckets: dict[int, int] = {} if a is None else {bucket.le: bucket.count for bucket in a.buckets}
    for bucket in b.buckets:
        buckets[bucket.le] = buckets.get(bucket.le, 0) + bucket.count
    histogram = FilteredHistogram(
        sum=b.sum + (a.sum if a is not None else 0),
        count=b.count + (a.count if a is not None else 0),
        buckets=[Bucket(le=le, count=count) for le, count in sorted(buckets.items())],
    )
    return FilteredMetrics(inner=FilteredMetricsInner(histogram=histogram))


def _merge_clusters(into: dict[str, ClusterMetrics], clusters: dict[str, ClusterMetrics]) -> None:
    for cluster_id, cluster in clusters.items():
        merged = into.setdefault(cluster_id, ClusterMetrics())
        _merge(merged.cluster, cluster.cluster)
        backends = {backend.backend_id: backend for backend in merged.backends}
        for backend in cluster.backends:
            known = backends.get(backend.backend_id)
            if known is None:
                known = backends[backend.backend_id] = BackendMetrics(backend_id=backend.backend_id)
                merged.backends.append(known)
            _merge(known.metrics, backend.metrics)


def _base(name: str) -> str:
    return name.partition(":")[0]


def _named(metrics: dict[str, FilteredMetrics], names: list[str]) -> dict[str, FilteredMetrics]:
    return {k: v for k, v in metrics.items() if not names or _base(k) in names}


def _available(listed: list[AvailableMetrics]) -> Response:
    """The names the workers listed themselves, merged (sorted, each once)."""
    available = AvailableMetrics(
        proxy_metrics=sorted({name for names in listed for name in names.proxy_metrics}),
        cluster_metrics=sorted({name for names in listed for name in names.cluster_metrics}),
    )
    return Response.ok(content=ResponseContent.of(available_metrics=available))


def aggregate(options: QueryMetricsOptions, per_worker: dict[str, WorkerMetrics]) -> Response:
    if options.list:
        scopes = [c for m in per_worker.values() for c in m.clusters.values()]
        cluster_names = {_base(name) for c in scopes for name in c.cluster}
        cluster_names |= {_base(name) for c in scopes for b in c.backends for name in b.metrics}
        available = AvailableMetrics(
            proxy_metrics=sorted({_base(name) for m in per_worker.values() for name in m.proxy}),
            cluster_metrics=sorted(cluster_names),
        )
        return Response.ok(content=ResponseContent.of(available_metrics=available))
    names = options.metric_names
    if options.workers:
        shown = {
            worker_id: WorkerMetrics(
                proxy=_named(m.proxy, names),
                clusters={} if options.no_clusters else m.clusters,
            )
            for worker_id, m in per_worker.items()
        }
        return Response.ok(content=ResponseContent.of(metrics=AggregatedMetrics(workers=shown)))
    proxying: dict[str, FilteredMetrics] = {}
    clusters: dict[str, ClusterMetrics] = {}
    for metrics in per_worker.values():
        _merge(proxying, metrics.proxy)
        if not options.no_clusters:
            _merge_clusters(clusters, metrics.clusters)
    merged = AggregatedMetrics(
        proxying=_named(dict(sorted(proxying.items())), names), clusters=clusters
    )
    return Response.ok(content=ResponseContent.of(metrics=merged))


def query_metrics(pool: WorkerPool, request: Request, timeout: float) -> Job:
    gather = yield pool.scatter(request, timeout)
    listed = [c.value for c in gather.contents().values() if c.kind == "available_metrics"]
    if request.body.list and listed:  # workers that name their metrics themselves
        response = _available(listed)
        if gather.failures:
            response.message = f"some workers did not answer: {gather.failure_message()}"
        return response
    per_worker = {
        str(worker_id): content.value
        for worker_id, content in gather.contents().items()
        if content.kind == "worker_metrics"
    }
    response = aggregate(request.body, per_worker)
    if gather.failures:
        response.message = f"some workers did not answer: {gather.failure_message()}"
    return response
