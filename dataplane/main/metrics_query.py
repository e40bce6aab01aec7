"""`query_metrics`: every worker's figures, merged (or per worker with `workers=true`).

Workers answer with their `WorkerMetrics`. Merged, counts and gauges are summed by name (a
percentile or a histogram cannot be summed and is shown per worker only); `list=true` answers
the names that exist. Filters by metric name apply to both views.
"""

from __future__ import annotations

from dataplane.command.messages import QueryMetricsOptions, Request
from dataplane.command.responses import (
    AggregatedMetrics,
    AvailableMetrics,
    FilteredMetrics,
    FilteredMetricsInner,
    Response,
    ResponseContent,
    WorkerMetrics,
)
from dataplane.main.jobs import Job
from dataplane.main.workers import WorkerPool


def _summed(figures: list[dict[str, FilteredMetrics]]) -> dict[str, FilteredMetrics]:
    totals: dict[str, list[int | None]] = {}
    for metrics in figures:
        for name, metric in metrics.items():
            count, gauge = totals.setdefault(name, [None, None])
            inner = metric.inner
            if inner.count is not None:
                totals[name][0] = (count or 0) + inner.count
            if inner.gauge is not None:
                totals[name][1] = (gauge or 0) + inner.gauge
    return {
        name: FilteredMetrics(inner=FilteredMetricsInner(count=count, gauge=gauge))
        for name, (count, gauge) in sorted(totals.items())
        if count is not None or gauge is not None
    }


def _named(metrics: dict[str, FilteredMetrics], names: list[str]) -> dict[str, FilteredMetrics]:
    return {k: v for k, v in metrics.items() if not names or k in names}


def aggregate(options: QueryMetricsOptions, per_worker: dict[str, WorkerMetrics]) -> Response:
    if options.list:
        available = AvailableMetrics(
            proxy_metrics=sorted({name for m in per_worker.values() for name in m.proxy}),
            cluster_metrics=sorted(
                {
                    name
                    for m in per_worker.values()
                    for c in m.clusters.values()
                    for name in c.cluster
                }
            ),
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
    proxying = _named(_summed([m.proxy for m in per_worker.values()]), names)
    return Response.ok(content=ResponseContent.of(metrics=AggregatedMetrics(proxying=proxying)))


def query_metrics(pool: WorkerPool, request: Request, timeout: float) -> Job:
    gather = yield pool.scatter(request, timeout)
    per_worker = {
        str(worker_id): content.value
        for worker_id, content in gather.contents().items()
        if content.kind == "worker_metrics"
    }
    response = aggregate(request.body, per_worker)
    if gather.failures:
        response.message = f"some workers did not answer: {gather.failure_message()}"
    return response
