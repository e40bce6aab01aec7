"""sozu's StatsD drain (`[metrics] address`): every worker's figures, once a second, over UDP.

Where it runs, and why: in main. sozu's workers each send their own lines (origin `WRK-NN`);
pysozu's workers keep cumulative counters and histograms
(dataplane/proxy/observability/metrics.py) and write nothing until main asks. So main asks
every live worker once a second (`query_metrics`, as `metrics get` and Prometheus do) and
sends, for each worker, the lines sozu's worker would have sent, with that worker's origin; the
deltas are computed here (statsd_lines.py). Workers do no new per-request work: a poll costs
each one snapshot per second, as a scrape does, and a worker that is slow to answer only delays
the next round (one round at a time).

What the workers answer follows their detail level (`[metrics] detail`: process, cluster or
backend scopes); with `disable_cluster_metrics = true` main asks for process figures only. A
worker that stops answering keeps its last figures as the base of its next deltas; a worker
gone (stopped, replaced, upgraded) is forgotten. Main adds its own `configuration.{clusters,
backends,frontends}` gauges with origin `MAIN`, as sozu's main does. After `upgrade_main`
the first answers of adopted workers are only a base (what they counted before was sent by
the previous main).

Lines go out packed in datagrams of at most `MAX_DATAGRAM` bytes, from a non-blocking socket
connected to the address; a datagram the kernel refuses (full buffer, nobody listening) is
dropped and counted (`Drain.dropped`, logged at most once a minute).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator

from dataplane.command.address import SocketAddress
from dataplane.command.messages import QueryMetricsOptions, Request
from dataplane.command.responses import WorkerMetrics
from dataplane.command.state import ConfigState
from dataplane.main.loop import EventLoop, Timer
from dataplane.main.statsd_lines import Flat, Format, Origin, flatten
from dataplane.main.tasks import Gather
from dataplane.main.workers import WorkerPool

log = logging.getLogger("pysozu.main")

MAX_DATAGRAM = 1432  # one Ethernet frame after the IPv6 and UDP headers
INTERVAL = 1.0
ROUND_TIMEOUT = 5.0
DROP_LOG_INTERVAL = 60.0
MAIN_ORIGIN = "MAIN"


def worker_origin(worker_id: int | str) -> str:
    return f"WRK-{int(worker_id):02d}"


def datagrams(lines: Iterable[str], size: int = MAX_DATAGRAM) -> Iterator[bytes]:
    """Lines (each ended by a newline) packed into datagrams of at most `size` bytes; a line
    longer than that goes alone."""
    batch: list[bytes] = []
    length = 0
    for line in lines:
        data = line.encode() + b"\n"
        if batch and length + len(data) > size:
            yield b"".join(batch)
            batch, length = [], 0
        batch.append(data)
        length += len(data)
    if batch:
        yield b"".join(batch)


def main_figures(state: ConfigState) -> Flat:
    """Main's own gauges, from the routing state (sozu's main sends these)."""
    fronts = len(state.http_fronts) + len(state.https_fronts)
    fronts += len(state.tcp_fronts) + len(state.udp_fronts)
    return {
        (None, None, "configuration.clusters"): ("g", len(state.clusters)),
        (None, None, "configuration.backends"): ("g", sum(len(b) for b in state.backends.values())),
        (None, None, "configuration.frontends"): ("g", fronts),
    }


class Drain:
    """The lines of each round, computed and sent (no timer: `StatsdPoller` calls it)."""

    def __init__(self, address: str, form: Format, sock: socket.socket | None = None) -> None:
        self.form = form
        self.origins: dict[str, Origin] = {}
        self.baseline: set[str] = set()  # origins whose next answer only sets the base
        self.dropped = 0
        self.sent = 0
        self._dropped_logged = 0
        self._last_drop_log = 0.0
        if sock is None:
            parsed = SocketAddress.parse(address)
            family = socket.AF_INET if parsed.ip.version == 4 else socket.AF_INET6
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect((str(parsed.ip), parsed.port))
            except OSError:
                sock.close()
                raise
        self.sock = sock

    def round(self, answers: dict[str, WorkerMetrics | None], main: Flat) -> list[str]:
        """The lines for one round: `answers` by origin (None: no answer in time)."""
        lines: list[str] = []
        for origin in [o for o in self.origins if o != MAIN_ORIGIN and o not in answers]:
            del self.origins[origin]  # that worker is gone
        for origin, metrics in answers.items():
            if metrics is None:
                continue
            known = self.origins.setdefault(origin, Origin())
            fresh = known.lines(origin, self.form, flatten(metrics))
            if origin in self.baseline:
                self.baseline.discard(origin)
            else:
                lines.extend(fresh)
        lines.extend(
            self.origins.setdefault(MAIN_ORIGIN, Origin()).lines(MAIN_ORIGIN, self.form, main)
        )
        return lines

    def send(self, lines: Iterable[str]) -> None:
        for datagram in datagrams(lines):
            try:
                self.sock.send(datagram)
                self.sent += 1
            except OSError:  # full (EAGAIN), refused (nobody listens), unreachable...
                self.dropped += 1
        now = time.monotonic()
        if self.dropped > self._dropped_logged and now - self._last_drop_log >= DROP_LOG_INTERVAL:
            log.warning(
                "StatsD drain: %d datagrams dropped so far (the socket refused them)",
                self.dropped,
            )
            self._dropped_logged, self._last_drop_log = self.dropped, now

    def close(self) -> None:
        self.sock.close()


class StatsdPoller:
    """Once a second: `query_metrics` to every live worker, then one `Drain` round."""

    def __init__(
        self,
        loop: EventLoop,
        pool: WorkerPool,
        drain: Drain,
        state: Callable[[], ConfigState],
        process_only: bool,
    ) -> None:
        self.loop = loop
        self.pool = pool
        self.drain = drain
        self.state = state
        self.options = QueryMetricsOptions(no_clusters=process_only)
        self.busy = False
        self.timer: Timer | None = None

    def start(self, adopted: bool = False) -> None:
        if adopted:
            self.drain.baseline = {worker_origin(w.id) for w in self.pool.live()}
        self.timer = self.loop.call_later(INTERVAL, self._tick)

    def _tick(self) -> None:
        self.timer = self.loop.call_later(INTERVAL, self._tick)
        if self.busy:
            return  # the previous round still waits for a worker
        workers = [worker_origin(worker.id) for worker in self.pool.live()]
        self.busy = True
        gather = self.pool.scatter(Request.of(query_metrics=self.options), ROUND_TIMEOUT)
        if gather.done:
            self._finished(workers, gather)
        else:
            gather.on_done = lambda done: self._finished(workers, done)

    def _finished(self, workers: list[str], gather: Gather) -> None:
        self.busy = False
        answers: dict[str, WorkerMetrics | None] = dict.fromkeys(workers)
        for worker_id, content in gather.contents().items():
            if content.kind == "worker_metrics":
                answers[worker_origin(worker_id)] = content.value
        self.drain.send(self.drain.round(answers, main_figures(self.state())))

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.drain.close()
