"""`pysozu top`'s picture: what two polls of main say, drawn as lines of text (no terminal here).

A `Poll` is one round of questions to main (`status`, then `query_metrics` merged and per
worker). Rates are the difference between two polls over the time between them; latencies are
read off the difference of the `request_time` (cluster, process) or `backend_response_time`
(backend) histograms, so they describe the last interval, not the whole run. A percentile read
off buckets is the bucket's upper bound (`<=`). With one poll only, rates show `-`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dataplane.cli.metrics_text import bound
from dataplane.command.responses import (
    AggregatedMetrics,
    Bucket,
    FilteredHistogram,
    FilteredMetrics,
    RunState,
    WorkerInfo,
)

MIN_WIDTH = 60
MIN_HEIGHT = 10


@dataclass
class Poll:
    at: float  # time.monotonic() when the answers came
    main: str  # main's line from `status`
    workers: list[WorkerInfo]
    metrics: AggregatedMetrics  # merged over the workers, with clusters
    worker_requests: dict[str, int] = field(default_factory=dict)  # worker id -> http.requests


def _value(metrics: dict[str, FilteredMetrics], name: str) -> int | None:
    metric = metrics.get(name)
    if metric is None:
        return None
    inner = metric.inner
    return inner.count if inner.count is not None else inner.gauge


def _histogram(metrics: dict[str, FilteredMetrics], name: str) -> FilteredHistogram | None:
    metric = metrics.get(name)
    return metric.inner.histogram if metric is not None else None


def histogram_since(now: FilteredHistogram | None, before: FilteredHistogram | None) -> Any:
    """The requests recorded between two polls (a smaller count means the figures were
    cleared or a worker restarted: then the whole of `now`)."""
    if now is None or before is None or before.count > now.count:
        return now
    earlier = {bucket.le: bucket.count for bucket in before.buckets}
    buckets = [Bucket(le=b.le, count=max(0, b.count - earlier.get(b.le, 0))) for b in now.buckets]
    return FilteredHistogram(
        sum=now.sum - before.sum, count=now.count - before.count, buckets=buckets
    )


class Interval:
    """Rates of one scope (process, cluster or backend) between two polls."""

    def __init__(
        self,
        now: dict[str, FilteredMetrics],
        before: dict[str, FilteredMetrics] | None,
        seconds: float,
        latency: str = "request_time",
    ) -> None:
        self.now, self.before, self.seconds = now, before, seconds
        self.latency = histogram_since(
            _histogram(now, latency), _histogram(before, latency) if before is not None else None
        )

    def rate(self, name: str) -> float | None:
        if self.before is None or self.seconds <= 0:
            return None
        now = _value(self.now, name) or 0
        before = _value(self.before, name) or 0
        return max(0, now - before if now >= before else now) / self.seconds

    def quantile(self, q: float) -> str:
        if self.before is None or self.latency is None:
            return "-"
        return str(bound(self.latency, q))


def per_second(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def byte_rate(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


def columns(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A table as lines: the first column left-aligned, the others right-aligned."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]


def _summary(now: Poll, before: Poll | None, seconds: float) -> str:
    scope = Interval(now.metrics.proxying, before.metrics.proxying if before else None, seconds)
    connections = _value(now.metrics.proxying, "client.connections")
    return (
        f"requests {per_second(scope.rate('http.requests'))}/s"
        f"  5xx {per_second(scope.rate('http.status.5xx'))}/s"
        f"  connections {'-' if connections is None else connections}"
        f"  p50 {scope.quantile(0.5)} ms  p99 {scope.quantile(0.99)} ms"
        f"  in {byte_rate(scope.rate('bytes_in'))}/s  out {byte_rate(scope.rate('bytes_out'))}/s"
    )


def _workers(now: Poll, before: Poll | None, seconds: float) -> list[str]:
    rows = []
    for info in sorted(now.workers, key=lambda w: w.id):
        key = str(info.id)
        requests: float | None = None
        if before is not None and key in before.worker_requests and seconds > 0:
            delta = now.worker_requests.get(key, 0) - before.worker_requests[key]
            requests = max(0, delta) / seconds
        connections = "-" if info.connections is None else info.connections
        state = RunState(info.run_state).name
        rows.append((info.id, info.pid, state, connections, per_second(requests)))
    return columns(("WORKER", "PID", "STATE", "CONNS", "REQ/S"), rows)


def _clusters(now: Poll, before: Poll | None, seconds: float) -> tuple[list[str], bool]:
    """The cluster table (backends indented under their cluster); True if any backend shows."""
    rows: list[tuple[object, ...]] = []
    earlier = before.metrics.clusters if before is not None else {}
    scopes = []
    for cluster_id, cluster in now.metrics.clusters.items():
        old = earlier.get(cluster_id)
        interval = Interval(cluster.cluster, old.cluster if old else None, seconds)
        scopes.append((-(interval.rate("http.requests") or 0), cluster_id, interval, cluster, old))
    any_backend = False
    for _, cluster_id, interval, cluster, old in sorted(scopes, key=lambda s: s[:2]):
        rows.append(_row(cluster_id, interval, _value(cluster.cluster, "http.requests")))
        old_backends = {b.backend_id: b.metrics for b in old.backends} if old else {}
        for backend in sorted(cluster.backends, key=lambda b: b.backend_id):
            any_backend = True
            scope = Interval(
                backend.metrics, old_backends.get(backend.backend_id), seconds,
                "backend_response_time",
            )  # fmt: skip
            rows.append(
                _row(f"  {backend.backend_id}", scope, _value(backend.metrics, "http.requests"))
            )
    headers = ("CLUSTER / backend", "REQ/S", "5XX/S", "P50 ms", "P99 ms", "IN/S", "OUT/S", "REQS")
    return columns(headers, rows), any_backend


def _row(name: str, scope: Interval, total: int | None) -> tuple[object, ...]:
    return (
        name,
        per_second(scope.rate("http.requests")),
        per_second(scope.rate("http.status.5xx")),
        scope.quantile(0.5),
        scope.quantile(0.99),
        byte_rate(scope.rate("bytes_in")),
        byte_rate(scope.rate("bytes_out")),
        "-" if total is None else total,
    )


def render(
    now: Poll,
    before: Poll | None,
    width: int,
    height: int,
    refresh_ms: int,
    note: str = "",
    wall: float | None = None,
) -> list[str]:
    """At most `height` lines of at most `width` characters: header, totals, workers,
    clusters (cut with a `... N more` line when they do not fit), then `note`."""
    seconds = now.at - before.at if before is not None else 0.0
    clock = time.strftime("%H:%M:%S", time.localtime(time.time() if wall is None else wall))
    lines = [
        f"pysozu top  {clock}  every {refresh_ms / 1000:g} s  (q quits)",
        now.main,
        _summary(now, before, seconds),
        "",
        *_workers(now, before, seconds),
        "",
    ]
    clusters, any_backend = _clusters(now, before, seconds)
    footer = [note] if note else []
    if now.metrics.clusters and not any_backend and not note:
        footer = ["(no backend rows: they need metrics detail BACKEND)"]
    if not now.metrics.clusters:
        clusters = ["no cluster figures yet (no request served, or metrics detail below CLUSTER)"]
    room = height - len(lines) - len(footer)
    if len(clusters) > room:
        hidden = len(clusters) - max(room - 1, 0)
        clusters = [*clusters[: max(room - 1, 0)], f"... {hidden} more rows (enlarge the terminal)"]
    lines += clusters[: max(room, 0)] + footer
    return [line[:width] for line in lines[:height]]
