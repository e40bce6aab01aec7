"""`pysozu top`'s frames, drawn from fixed figures, and its lease (no sockets)."""

from __future__ import annotations

import argparse
import json

import pytest

from dataplane.cli import app, metrics_text
from dataplane.cli.top import DETAILS, Source
from dataplane.cli.top_frame import Poll, histogram_since, render
from dataplane.cli.tree import build_parser
from dataplane.cli.unserved import unserved_flags
from dataplane.command.messages import MetricDetail, Request
from dataplane.command.responses import (
    AggregatedMetrics,
    BackendMetrics,
    Bucket,
    ClusterMetrics,
    FilteredHistogram,
    FilteredMetrics,
    FilteredMetricsInner,
    Response,
    RunState,
    WorkerInfo,
)

BOUNDS = (500, 1000, 2500, 5000, 10000)  # µs


def count(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(count=value))


def gauge(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(gauge=value))


def histogram(per_bucket: list[int], total_us: int) -> FilteredMetrics:
    """Requests per bucket of BOUNDS (not cumulative); the wire's buckets are cumulative."""
    running, buckets = 0, []
    for le, n in zip(BOUNDS, per_bucket, strict=True):
        running += n
        buckets.append(Bucket(le=le, count=running))
    return FilteredMetrics(
        inner=FilteredMetricsInner(
            histogram=FilteredHistogram(sum=total_us, count=running, buckets=buckets)
        )
    )


def figures(requests: int, errors: int, latency: list[int]) -> dict[str, FilteredMetrics]:
    return {
        "http.requests": count(requests),
        "http.status.5xx": count(errors),
        "bytes_in": count(requests * 100),
        "bytes_out": count(requests * 2048),
        "request_time": histogram(latency, 1000 * sum(latency)),
        "backend_response_time": histogram(latency, 900 * sum(latency)),
    }


def poll(at: float, requests: int, latency: list[int], clusters: int = 1) -> Poll:
    cluster_figures = {
        f"c{n}": ClusterMetrics(
            cluster=figures(requests, 2 * n, latency),
            backends=[BackendMetrics(backend_id=f"c{n}-1", metrics=figures(requests, 0, latency))],
        )
        for n in range(clusters)
    }
    merged = AggregatedMetrics(
        proxying={**figures(requests, 0, latency), "client.connections": gauge(7)},
        clusters=cluster_figures,
    )
    workers = [
        WorkerInfo(id=0, pid=100, run_state=RunState.RUNNING, connections=3),
        WorkerInfo(id=1, pid=101, run_state=RunState.RUNNING, connections=4),
    ]
    per_worker = {"0": requests // 2, "1": requests - requests // 2}
    return Poll(at, "main: pid 99, version 0.1.0", workers, merged, per_worker)


def test_rates_are_the_difference_between_two_polls() -> None:
    before = poll(10.0, 100, [0, 0, 0, 0, 0])
    now = poll(12.0, 300, [150, 40, 10, 0, 0])  # 200 more requests in 2 s
    lines = render(now, before, 120, 40, 1000, wall=0)
    text = "\n".join(lines)
    assert "requests 100.0/s" in text and "connections 7" in text
    assert "p50 <=0.5 ms  p99 <=2.5 ms" in text  # read off the interval's buckets
    row = next(line for line in lines if line.startswith("c0 "))
    assert row.split() == ["c0", "100.0", "0.0", "<=0.5", "<=2.5", "9.8KB", "200.0KB", "300"]
    backend = next(line for line in lines if line.startswith("  c0-1"))
    assert backend.split()[1] == "100.0"
    worker = next(line for line in lines if line.startswith("1 "))
    assert worker.split() == ["1", "101", "RUNNING", "4", "50.0"]


def test_the_first_frame_has_no_rates_yet() -> None:
    text = "\n".join(render(poll(1.0, 50, [50, 0, 0, 0, 0]), None, 120, 40, 1000, wall=0))
    assert "requests -/s" in text and "p50 - ms" in text
    assert "c0" in text and "50" in text


def test_figures_that_went_backwards_count_from_zero() -> None:
    """`metrics clear` or a restarted worker: the new figures are the interval's."""
    before = poll(0.0, 500, [500, 0, 0, 0, 0])
    now = poll(1.0, 20, [0, 0, 0, 20, 0])
    text = "\n".join(render(now, before, 120, 40, 1000, wall=0))
    assert "requests 20.0/s" in text and "p50 <=5.0 ms" in text


def test_histogram_since_subtracts_bucket_by_bucket() -> None:
    before = histogram([1, 1, 0, 0, 0], 2000).inner.histogram
    now = histogram([1, 3, 0, 0, 5], 9000).inner.histogram
    assert before is not None and now is not None
    delta = histogram_since(now, before)
    assert delta.count == 7 and delta.sum == 7000
    assert [b.count for b in delta.buckets] == [0, 2, 2, 2, 7]
    assert metrics_text.bound(delta, 0.5) == "<=10.0"
    assert metrics_text.bound(delta, 0.2) == "<=1.0"


def test_a_frame_fits_the_terminal_and_says_what_it_left_out() -> None:
    before, now = poll(0.0, 0, [0] * 5, clusters=30), poll(1.0, 10, [10, 0, 0, 0, 0], clusters=30)
    lines = render(now, before, 60, 20, 1000, note="lease refused", wall=0)
    assert len(lines) == 20 and all(len(line) <= 60 for line in lines)
    assert lines[-1] == "lease refused"
    assert lines[-2].startswith("... ") and "more rows" in lines[-2]


def test_without_backend_rows_the_frame_says_why() -> None:
    now = poll(1.0, 10, [10, 0, 0, 0, 0])
    for cluster in now.metrics.clusters.values():
        cluster.backends = []
    assert "metrics detail BACKEND" in render(now, None, 120, 40, 1000, wall=0)[-1]


def test_top_flags_parse_and_the_looks_only_ones_are_named() -> None:
    args = build_parser().parse_args(
        ["top", "--refresh-ms", "250", "--detail", "cluster", "--snapshot", "3"]
    )
    assert (args.run, args.refresh_ms, args.detail, args.snapshot) == ("top", 250, "cluster", 3)
    assert unserved_flags(args) == []
    args = build_parser().parse_args(["top", "--skin", "x", "--glyphs", "tty", "--no-mouse"])
    assert [line.partition(":")[0] for line in unserved_flags(args)] == [
        "--skin",
        "--glyphs",
        "--no-mouse",
    ]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["top", "--refresh-ms", "10"])


class FakeClient:
    def __init__(self, answer: Response) -> None:
        self.answer = answer
        self.sent: list[Request] = []

    def request(self, request: Request) -> Response:
        self.sent.append(request)
        return self.answer


def _source(answer: Response, *argv: str) -> tuple[Source, FakeClient]:
    args: argparse.Namespace = build_parser().parse_args(["top", *argv])
    client = FakeClient(answer)
    return Source(client, args), client  # type: ignore[arg-type]


def test_the_detail_lease_asks_for_the_detail_and_ttl_and_is_renewed_at_half() -> None:
    source, client = _source(Response.ok(), "--detail", "cluster", "--lease-ttl-seconds", "30")
    source.lease(100.0)
    lease = client.sent[0].body
    assert (lease.detail, lease.ttl_seconds) == (MetricDetail.DETAIL_CLUSTER, 30)
    source.lease(114.0)
    assert len(client.sent) == 1 and source.note == ""
    source.lease(115.0)
    assert len(client.sent) == 2
    assert DETAILS["backend"] == MetricDetail.DETAIL_BACKEND


def test_a_refused_lease_is_said_on_the_frame_and_not_asked_again() -> None:
    source, client = _source(Response.failure("set_metric_detail: not supported yet"))
    source.lease(0.0)
    source.lease(1000.0)
    assert len(client.sent) == 1
    assert "lease refused" in source.note and "not supported yet" in source.note


def test_top_has_no_json_and_says_so_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["-j", "top", "--tick-once"]) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "FAILURE" and "metrics get --json" in answer["message"]
