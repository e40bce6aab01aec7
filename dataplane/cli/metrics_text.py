"""`metrics get` for people: sozu's text layout (`command/src/proto/display.rs`), in sections.

MAIN PROCESS, PROXYING (summed over the workers), one section per worker with `-w`, then
Clusters: one block per cluster and, under it, one per backend (`cluster/backend`). Each block
has up to three tables, as in sozu: gauges and counts, percentiles, histograms. A histogram is
shown as its count, its sum and the p50/p90/p99 read off its buckets, in milliseconds (the
wire carries microseconds); a percentile read off buckets is the bucket's upper bound, hence
the `<=`, and `>60000` when it fell in the last (+Inf) bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from dataplane.command.responses import FilteredHistogram, FilteredMetrics


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Left-aligned columns two spaces apart (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(
            cell.rjust(width) if index and _numeric(cell) else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        out.write(line.rstrip() + "\n")


def _numeric(cell: str) -> bool:
    return cell.lstrip("<=>-").replace(".", "", 1).isdigit()


def quantile(histogram: FilteredHistogram, q: float) -> int | None:
    """The upper bound (µs) of the bucket holding the q-quantile; None when it is above every
    bound (the +Inf bucket) or the histogram is empty. Buckets are cumulative."""
    if histogram.count <= 0:
        return None
    wanted = q * histogram.count
    for bucket in histogram.buckets:
        if bucket.count >= wanted:
            return bucket.le
    return None


def milliseconds(microseconds: float) -> str:
    ms = microseconds / 1000
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}".rstrip("0")


def bound(histogram: FilteredHistogram, q: float) -> str:
    if histogram.count <= 0:
        return "-"
    found = quantile(histogram, q)
    if found is None:
        last = histogram.buckets[-1].le if histogram.buckets else 0
        return f">{milliseconds(last)}"
    return f"<={milliseconds(found)}"


def _kind(metric: FilteredMetrics) -> str:
    inner = metric.inner
    for kind in ("gauge", "count", "time", "percentiles", "histogram", "time_serie"):
        if getattr(inner, kind) is not None:
            return kind
    return "none"


def show_block(metrics: dict[str, FilteredMetrics], out: TextIO) -> None:
    """One scope's figures: gauges and counts, then percentiles, then histograms."""
    by_kind: dict[str, list[tuple[str, Any]]] = {}
    for name in sorted(metrics):
        kind = _kind(metrics[name])
        by_kind.setdefault(kind, []).append((name, getattr(metrics[name].inner, kind, None)))
    plain = [
        (name, value if kind == "gauge" else "", value if kind == "count" else "")
        for kind in ("gauge", "count", "time")
        for name, value in by_kind.get(kind, [])
    ]
    plain.sort()
    if plain:
        table(("", "gauge", "count"), plain, out)
    percentiles = [
        (name, p.samples, p.p_50, p.p_90, p.p_99, p.p_99_9, p.p_99_99, p.p_99_999, p.p_100)
        for name, p in by_kind.get("percentiles", [])
    ]
    if percentiles:
        headers = ("Percentiles", "samples", "p50", "p90", "p99", "p99.9", "p99.99", "p99.999")
        table((*headers, "p100"), percentiles, out)
    histograms = [
        (name, h.count, milliseconds(h.sum), bound(h, 0.5), bound(h, 0.9), bound(h, 0.99))
        for name, h in by_kind.get("histogram", [])
    ]
    if histograms:
        table(("Histograms (ms)", "count", "sum", "p50", "p90", "p99"), histograms, out)
    series = [(name, s.last_second) for name, s in by_kind.get("time_serie", [])]
    if series:
        table(("Time series", "last second"), series, out)
    if not (plain or percentiles or histograms or series):
        out.write("(no figures)\n")


def _heading(title: str, underline: str, out: TextIO) -> None:
    out.write(f"\n{title}\n{underline * len(title)}\n")


def _show_clusters(clusters: dict[str, Any], out: TextIO) -> None:
    for cluster_id in sorted(clusters):
        cluster = clusters[cluster_id]
        _heading(f"Cluster {cluster_id}", "-", out)
        show_block(cluster.cluster, out)
        for backend in sorted(cluster.backends, key=lambda b: b.backend_id):
            _heading(f"{cluster_id}/{backend.backend_id}", "-", out)
            show_block(backend.metrics, out)


def show_aggregated(metrics: Any, out: TextIO) -> None:
    """An `AggregatedMetrics` in sozu's order; sections with nothing in them are left out."""
    shown = False
    if metrics.main:
        _heading("MAIN PROCESS", "=", out)
        show_block(metrics.main, out)
        shown = True
    if metrics.proxying:
        _heading("PROXYING", "=", out)
        show_block(metrics.proxying, out)
        shown = True
    for worker_id in sorted(metrics.workers, key=lambda w: (len(w), w)):
        worker = metrics.workers[worker_id]
        _heading(f"Worker {worker_id}", "=", out)
        show_block(worker.proxy, out)
        _show_clusters(worker.clusters, out)
        shown = True
    if metrics.clusters:
        _heading("Clusters", "=", out)
        _show_clusters(metrics.clusters, out)
        shown = True
    if not shown:
        out.write("no metrics\n")
