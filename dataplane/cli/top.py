"""`pysozu top`: sozu's live view (workers, clusters, requests/s, latency, connections).

Every `--refresh-ms` it asks main `status` and `query_metrics` on one command connection and
redraws (`top_frame.render`) on the terminal (`top_terminal`: plain ANSI escapes, `q` quits,
the terminal given back as found on every way out).

`--snapshot N` prints N frames to stdout without escapes and exits, `--tick-once` is
`--snapshot 1`: for scripts. The first frame needs two polls (rates are differences), so it
comes one refresh after the start.

Like sozu's, it asks the workers for backend-level figures with a `set_metric_detail` lease
(`--detail`, `--lease-ttl-seconds`, renewed at half the TTL): when main refuses it, the
frame's last line says so, and backend rows appear only if the config's `[metrics] detail`
is BACKEND.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from dataplane.cli.args import unsigned
from dataplane.cli.client import CommandClient, CommandError
from dataplane.cli.top_frame import Poll, render
from dataplane.cli.top_terminal import interactive
from dataplane.cli.tree_base import Subparsers, leaf
from dataplane.command.config import Config
from dataplane.command.messages import (
    Empty,
    MetricDetail,
    QueryMetricsOptions,
    Request,
    SetMetricDetail,
)
from dataplane.command.responses import AggregatedMetrics, Response, ResponseStatus

EXIT_UNREACHABLE = 3
DETAILS = {
    name: MetricDetail[f"DETAIL_{name.upper()}"]
    for name in ("process", "frontend", "cluster", "backend")
}


def _refresh_ms(text: str) -> int:
    value = unsigned(text)
    if value < 100:
        raise argparse.ArgumentTypeError(f"{value}: the refresh is at least 100 ms")
    return value


def add_top(subparsers: Subparsers) -> None:
    top = leaf(subparsers, "top", "live view: workers, clusters, requests/s, latency (q quits)")
    top.set_defaults(run="top")
    top.add_argument(
        "--refresh-ms",
        type=_refresh_ms,
        default=1000,
        metavar="MS",
        help="poll every MS ms (default 1000)",
    )
    top.add_argument(
        "--detail",
        choices=sorted(DETAILS),
        default="backend",
        help="metrics detail to lease from the workers (default backend)",
    )
    top.add_argument(
        "--lease-ttl-seconds",
        type=unsigned,
        default=60,
        metavar="S",
        help="the lease's lifetime, renewed at half of it (default 60)",
    )
    top.add_argument(
        "--snapshot",
        type=unsigned,
        metavar="N",
        help="print N frames to stdout and exit (no terminal needed)",
    )
    top.add_argument(
        "--tick-once", action="store_true", help="print one frame and exit (--snapshot 1)"
    )
    top.add_argument(
        "--skin", metavar="NAME", help="sozu's colour skin (pysozu top draws without colours)"
    )
    top.add_argument(
        "--glyphs",
        choices=("braille", "block", "tty"),
        help="sozu's sparkline glyphs (pysozu top has no sparklines)",
    )
    top.add_argument(
        "--no-mouse",
        action="store_true",
        help="sozu's mouse capture switch (pysozu top never captures the mouse)",
    )


class Source:
    """The questions of one frame, on one command connection, and the detail lease."""

    def __init__(self, client: CommandClient, args: argparse.Namespace) -> None:
        self.client = client
        self.detail = DETAILS[args.detail]
        self.ttl = args.lease_ttl_seconds
        self.lease_until = 0.0  # monotonic time to renew the lease
        self.note = ""

    def ask(self, request: Request) -> Response:
        response = self.client.request(request)
        if response.status != ResponseStatus.OK:
            raise CommandError(f"main answered FAILURE: {response.message}")
        return response

    def lease(self, now: float) -> None:
        if now < self.lease_until:
            return
        lease = SetMetricDetail(
            client_id=f"pysozu-top-{os.getpid()}",
            detail=self.detail,
            ttl_seconds=self.ttl,
            reason="pysozu top",
        )
        answer = self.client.request(Request.of(set_metric_detail=lease))
        if answer.status == ResponseStatus.OK:
            self.lease_until, self.note = now + max(self.ttl / 2, 1), ""
        else:  # asked once: main will not change its mind while we run
            self.lease_until = float("inf")
            self.note = f"detail lease refused, [metrics] detail applies: {answer.message}"

    def poll(self) -> Poll:
        self.lease(time.monotonic())
        status = self.ask(Request.of(status=Empty()))
        merged = self.ask(Request.of(query_metrics=QueryMetricsOptions()))
        names = QueryMetricsOptions(workers=True, no_clusters=True, metric_names=["http.requests"])
        per_worker = self.ask(Request.of(query_metrics=names))
        workers = (
            status.content.value.vec if status.content and status.content.kind == "workers" else []
        )
        metrics = (
            merged.content.value
            if merged.content and merged.content.kind == "metrics"
            else AggregatedMetrics()
        )
        requests: dict[str, int] = {}
        if per_worker.content and per_worker.content.kind == "metrics":
            for worker_id, figures in per_worker.content.value.workers.items():
                metric = figures.proxy.get("http.requests")
                if metric is not None and metric.inner.count is not None:
                    requests[worker_id] = metric.inner.count
        return Poll(time.monotonic(), status.message or "", workers, metrics, requests)


def run_top(args: argparse.Namespace, config: Config) -> int:
    timeout = (
        config.ctl_command_timeout / 1000 if args.timeout is None else (args.timeout / 1000 or None)
    )
    frames = 1 if args.tick_once else args.snapshot
    try:
        client = CommandClient(config.command_socket, timeout, config.max_command_buffer_size)
    except CommandError as error:
        print(f"pysozu: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    with client:
        source = Source(client, args)
        if frames is not None:
            return _snapshots(source, args.refresh_ms, frames)
        return interactive(source.poll, lambda: source.note, args.refresh_ms)


def _snapshots(source: Source, refresh_ms: int, frames: int) -> int:
    """Whole frames (every cluster: no height limit), as wide as the terminal or $COLUMNS."""
    width, height = shutil.get_terminal_size((120, 40)).columns, 1_000_000
    try:
        before = source.poll()
        for index in range(frames):
            time.sleep(refresh_ms / 1000)
            now = source.poll()
            if index:
                print()
            print(
                "\n".join(render(now, before, width, height, refresh_ms, source.note)), flush=True
            )
            before = now
    except CommandError as error:
        print(f"pysozu: main is gone: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0
