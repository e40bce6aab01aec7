"""`pysozu top`: sozu's live view (workers, clusters, requests/s, latency, connections).

Every `--refresh-ms` it asks main `status` and `query_metrics` on one command connection and
redraws (`top_frame.render`). On a terminal it uses plain ANSI escapes only (alternate screen,
hidden cursor, no curses), so it works over ssh; `q`, `Q` or ctrl-C quit with status 0. The
terminal is given back as found (cursor shown, line mode and echo back, main screen) on every
way out: q, ctrl-C, SIGTERM/SIGHUP, main gone (status 3), terminal too small (status 1); the
message is printed after that, on the restored screen.

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
import select
import shutil
import signal
import sys
import termios
import time
import tty
from types import FrameType

from dataplane.cli.args import unsigned
from dataplane.cli.client import CommandClient, CommandError
from dataplane.cli.top_frame import MIN_HEIGHT, MIN_WIDTH, Poll, render
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

EXIT_FAILURE = 1
EXIT_UNREACHABLE = 3
DETAILS = {
    name: MetricDetail[f"DETAIL_{name.upper()}"]
    for name in ("process", "frontend", "cluster", "backend")
}
ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, main screen


class Quit(Exception):
    """A signal asked us to leave (SIGTERM, SIGHUP: the ssh session is gone)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
        return _interactive(source, args.refresh_ms)


def _snapshots(source: Source, refresh_ms: int, frames: int) -> int:
    width, height = shutil.get_terminal_size((120, 40))
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


def _too_small(fd: int) -> str | None:
    size = os.get_terminal_size(fd)
    if size.columns < MIN_WIDTH or size.lines < MIN_HEIGHT:
        return (
            f"terminal too small ({size.columns}x{size.lines}):"
            f" pysozu top needs at least {MIN_WIDTH}x{MIN_HEIGHT}"
        )
    return None


def _interactive(source: Source, refresh_ms: int) -> int:
    keys, screen = sys.stdin.fileno(), sys.stdout.fileno()
    if not (os.isatty(keys) and os.isatty(screen)):
        print(
            "pysozu: top draws on a terminal (stdin and stdout); for scripts use --snapshot N",
            file=sys.stderr,
        )
        return 2
    small = _too_small(screen)
    if small is not None:
        print(f"pysozu: {small}", file=sys.stderr)
        return EXIT_FAILURE
    saved = termios.tcgetattr(keys)

    def leave(signum: int, _frame: FrameType | None) -> None:
        raise Quit(signum)

    handlers = {s: signal.signal(s, leave) for s in (signal.SIGTERM, signal.SIGHUP)}
    code, message = 0, ""
    try:
        tty.setcbreak(keys)  # one key at a time, no echo; ctrl-C still raises KeyboardInterrupt
        os.write(screen, ENTER.encode())
        code, message = _loop(source, refresh_ms, keys, screen)
    except KeyboardInterrupt:
        code = 0
    except Quit as leaving:
        code = 128 + leaving.signum
    except CommandError as error:
        code, message = EXIT_UNREACHABLE, f"main is gone: {error}"
    except OSError as error:  # the terminal went away
        code, message = EXIT_FAILURE, f"terminal: {error.strerror or error}"
    finally:
        try:
            os.write(screen, LEAVE.encode())
            termios.tcsetattr(keys, termios.TCSADRAIN, saved)
        except OSError:
            pass
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if message:
        print(f"pysozu: {message}", file=sys.stderr)
    return code


def _draw(screen: int, lines: list[str]) -> None:
    body = "\x1b[K\r\n".join(lines)
    os.write(screen, f"\x1b[?2026h\x1b[H{body}\x1b[K\x1b[J\x1b[?2026l".encode())


def _loop(source: Source, refresh_ms: int, keys: int, screen: int) -> tuple[int, str]:
    """Poll, draw, wait for a key or the next poll; (exit status, message) when leaving."""
    before: Poll | None = None
    now = source.poll()
    size = os.get_terminal_size(screen)
    next_poll = time.monotonic() + refresh_ms / 1000
    while True:
        small = _too_small(screen)
        if small is not None:
            return EXIT_FAILURE, small
        size = os.get_terminal_size(screen)
        _draw(screen, render(now, before, size.columns, size.lines, refresh_ms, source.note))
        while time.monotonic() < next_poll and os.get_terminal_size(screen) == size:
            ready, _, _ = select.select(
                [keys], [], [], min(0.2, max(0.0, next_poll - time.monotonic()))
            )
            if ready:
                typed = os.read(keys, 64)
                if not typed or any(key in typed for key in b"qQ\x03"):
                    return 0, ""
        if time.monotonic() >= next_poll:
            before, now = now, source.poll()
            next_poll = time.monotonic() + refresh_ms / 1000
