"""The worker's figures: plain integers and fixed-bucket histograms, read by main on demand.

Requests are counted in batches (`count_requests`, from request_ends.py): a few integer
increments and two bucket walks up a constant tuple per request, no locks, no allocation (the
per-cluster and per-backend objects are created once, the first time a cluster or backend serves
a request), no system call. Main pulls a `WorkerMetrics`
snapshot over the channel (`query_metrics`) when it needs one, e.g. at each Prometheus scrape.

Units in a snapshot: sizes in bytes; histograms (`request_time`, `backend_response_time`) as
sozu's `FilteredHistogram`, with `le` and `sum` in MICROSECONDS and cumulative counts, one bucket
per finite bound of `BOUNDS_SECONDS` (the +Inf bucket is `count`).

Key names follow sozu's (`http.requests`, `http.status.2xx`, `bytes_in`, ...). Figures with one
label carry it after a colon: `listener.accepted:127.0.0.1:8080`, `http.answers:404`,
`tls.handshakes:TLSv1.3` (the name never holds a colon, so `key.partition(":")` splits them).

Figures of a removed cluster or backend are dropped at once; a cluster's totals are first folded
into the process totals, so process-wide counters never go backwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, NamedTuple

from dataplane.command.messages import MetricDetail, QueryMetricsOptions
from dataplane.command.responses import (
    AvailableMetrics,
    BackendMetrics,
    Bucket,
    ClusterMetrics,
    FilteredHistogram,
    FilteredMetrics,
    FilteredMetricsInner,
    WorkerMetrics,
)

if TYPE_CHECKING:
    from dataplane.proxy.observability.request_end import RequestEnd

BOUNDS_SECONDS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BOUNDS_MICROSECONDS: Final[tuple[int, ...]] = tuple(round(b * 1_000_000) for b in BOUNDS_SECONDS)
# A bucket is found by walking these up (`count_requests`): most requests end in the first
# three, where the walk costs what `bisect_left` does in Python and a tenth of it compiled
# (bisect's argument parsing is most of its cost); the last bound stops every walk.
_WALK_BOUNDS: tuple[float, ...] = (*BOUNDS_SECONDS, math.inf)
# index = status // 100 (status 0 = no response was sent; callers pass 0 <= status <= 999)
STATUS_CLASSES: Final[tuple[str, ...]] = (
    "none",
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "other",
    "other",
    "other",
    "other",
)

GaugeSource = Callable[[], dict[str, int]]
BackendGaugeSource = Callable[[], Iterable[tuple[str, str, str, int]]]


def _count(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(count=value))


def _gauge(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(gauge=value))


class Histogram:
    """Per-bucket counts (not cumulative) and the sum, in seconds. `count_requests` records
    into it inline, in the bucket of the first bound at or above the value (what
    `bisect_left(BOUNDS_SECONDS, seconds)` gives, found by a walk)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_SECONDS) + 1)  # the last one is above every bound
        self.sum = 0.0

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum

    def filtered(self) -> FilteredMetrics:
        buckets, running = [], 0
        for bound, count in zip(BOUNDS_MICROSECONDS, self.counts, strict=False):
            running += count
            buckets.append(Bucket(le=bound, count=running))
        histogram = FilteredHistogram(
            sum=round(self.sum * 1_000_000), count=running + self.counts[-1], buckets=buckets
        )
        return FilteredMetrics(inner=FilteredMetricsInner(histogram=histogram))


class _Figures:
    """What every scope counts: requests by status class, bytes, backend connect trouble."""

    __slots__ = (
        "backend_time",
        "bytes_in",
        "bytes_out",
        "connect_errors",
        "retries",
        "status",
        "tls_errors",
    )

    def __init__(self) -> None:
        self.status = [0] * 10
        self.bytes_in = 0
        self.bytes_out = 0
        self.backend_time = Histogram()
        self.connect_errors = 0
        self.retries = 0
        self.tls_errors = 0  # backend TLS handshakes or verifications that failed

    def add(self, other: _Figures) -> None:
        self.status = [a + b for a, b in zip(self.status, other.status, strict=True)]
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.backend_time.add(other.backend_histogram())
        self.connect_errors += other.connect_errors
        self.retries += other.retries
        self.tls_errors += other.tls_errors

    def backend_histogram(self) -> Histogram:
        return self.backend_time

    def export(self, into: dict[str, FilteredMetrics]) -> None:
        into["http.requests"] = _count(sum(self.status))
        classes: dict[str, int] = {}
        for index, count in enumerate(self.status):
            if count:
                name = STATUS_CLASSES[index]
                classes[name] = classes.get(name, 0) + count
        for name, count in classes.items():
            into[f"http.status.{name}"] = _count(count)
        into["bytes_in"] = _count(self.bytes_in)
        into["bytes_out"] = _count(self.bytes_out)
        into["backend_response_time"] = self.backend_histogram().filtered()
        into["backend.connections.error"] = _count(self.connect_errors)
        into["backend.connect.retries"] = _count(self.retries)
        if self.tls_errors:
            into["backend.tls.errors"] = _count(self.tls_errors)


class BackendFigures(_Figures):
    __slots__ = ()


class ClusterFigures(_Figures):
    """One cluster's figures, counted by `MetricsRegistry.count_requests`.

    Its backend time histogram is the sum of its backends' (one update per request, not two);
    `backend_time` itself only keeps what removed backends had recorded.
    """

    __slots__ = ("backends", "request_time")

    def __init__(self) -> None:
        super().__init__()
        self.request_time = Histogram()
        self.backends: dict[str, BackendFigures] = {}

    def backend_histogram(self) -> Histogram:
        total = Histogram()
        total.add(self.backend_time)
        for backend in self.backends.values():
            total.add(backend.backend_time)
        return total

    def absorb(self, other: ClusterFigures) -> None:
        self.add(other)
        self.request_time.add(other.request_time)

    def remove_backend(self, backend_id: str) -> None:
        backend = self.backends.pop(backend_id, None)
        if backend is not None:
            self.backend_time.add(backend.backend_time)

    def connect_failed(self, backend_id: str) -> None:
        self.connect_errors += 1
        self.backend(backend_id).connect_errors += 1

    def tls_failed(self, backend_id: str) -> None:
        self.tls_errors += 1
        self.backend(backend_id).tls_errors += 1

    def retried(self, backend_id: str) -> None:
        self.retries += 1
        self.backend(backend_id).retries += 1

    def backend(self, backend_id: str) -> BackendFigures:
        backend = self.backends.get(backend_id)
        if backend is None:
            backend = self.backends[backend_id] = BackendFigures()
        return backend

    def export(self, into: dict[str, FilteredMetrics]) -> None:
        super().export(into)
        into["request_time"] = self.request_time.filtered()


class ListenerFigures:
    __slots__ = ("accepted", "active")

    def __init__(self) -> None:
        self.accepted = 0
        self.active = 0

    def opened(self) -> None:
        self.accepted += 1
        self.active += 1

    def closed(self) -> None:
        self.active -= 1


class _Cluster(NamedTuple):
    """Stands for a cluster in `count_request` (the worker passes its `ClusterRuntime`)."""

    cluster_id: str


_NO_RUN = object()
_NO_FIGURES = ClusterFigures()  # stands for "none" in `count_requests`: written, never read


def _add_run(
    cluster: ClusterFigures,
    backend: _Figures,
    request_sum: float,
    backend_sum: float,
    bytes_in: int,
    bytes_out: int,
) -> None:
    """The sums of a run of requests to one cluster and backend (`count_requests`)."""
    cluster.request_time.sum += request_sum
    cluster.bytes_in += bytes_in
    cluster.bytes_out += bytes_out
    if backend is not _NO_FIGURES:
        backend.backend_time.sum += backend_sum
        backend.bytes_in += bytes_in
        backend.bytes_out += bytes_out


def _add_counts(
    cluster: ClusterFigures,
    backend: _Figures,
    status_at: int,
    status_n: int,
    request_at: int,
    request_n: int,
) -> None:
    """A run's pending counts of one status class and one request time bucket."""
    if status_n:
        cluster.status[status_at] += status_n
        if backend is not _NO_FIGURES:
            backend.status[status_at] += status_n
    if request_n:
        cluster.request_time.counts[request_at] += request_n


class MetricsRegistry:
    """All the figures of one worker. `cluster(None)` holds requests that matched no cluster."""

    def __init__(self) -> None:
        # Sampled at snapshot time, registered by the loop's owners: `{"buffer.in_use": 3}` ...
        self.gauge_sources: list[GaugeSource] = []
        self.counter_sources: list[GaugeSource] = []
        self.histogram_sources: list[Callable[[], dict[str, Histogram]]] = []
        # ... and per backend: (cluster_id, backend_id, name, value), e.g. circuit state.
        self.backend_gauge_sources: list[BackendGaugeSource] = []
        self.clear()

    # -- recording (hot path) ---------------------------------------------------------------

    def cluster(self, cluster_id: str | None) -> ClusterFigures:
        figures = self.clusters.get(cluster_id)
        if figures is None:
            figures = self.clusters[cluster_id] = ClusterFigures()
        return figures

    def count_requests(self, ends: list[RequestEnd]) -> None:
        """Requests that ended, a batch at a time (request_ends.py): status class, bytes and
        request time per cluster; status, bytes and backend time per backend reached (none for
        a default answer). The figures are looked up once per run of requests to the same
        cluster and backend, and its sums kept in locals until the run ends (a batch is mostly
        one run: this cost half as much as a call per request). Within a run, requests of the
        same status class (and the same time bucket) are counted in locals too, and added to
        the figures' lists when that changes: an addition to a list's boxed int costs an int
        object once past 256, one per request and list."""
        bounds = _WALK_BOUNDS
        routed_now: object = _NO_RUN
        backend_now: str | None = None
        cluster: ClusterFigures = _NO_FIGURES
        backend: _Figures = _NO_FIGURES
        cluster_status = backend_status = cluster.status
        request_counts = backend_counts = cluster.request_time.counts
        request_sum = backend_sum = 0.0
        bytes_in_sum = bytes_out_sum = 0
        status_at = request_at = backend_at = 0  # the status class and buckets of the run...
        status_n = request_n = backend_n = 0  # ...and how many requests of them are pending
        for (
            now,
            started,
            response_at,
            status,
            _message,
            routed,
            backend_id,
            bytes_in,
            bytes_out,
            _request_id,
            _fixed,
        ) in ends:
            if routed is not routed_now or backend_id != backend_now:
                _add_run(cluster, backend, request_sum, backend_sum, bytes_in_sum, bytes_out_sum)
                _add_counts(cluster, backend, status_at, status_n, request_at, request_n)
                if backend_n:
                    backend_counts[backend_at] += backend_n
                request_sum = backend_sum = 0.0
                bytes_in_sum = bytes_out_sum = 0
                status_n = request_n = backend_n = 0
                routed_now, backend_now = routed, backend_id
                cluster = self.cluster(None if routed is None else routed.cluster_id)
                backend = _NO_FIGURES if backend_id is None else cluster.backend(backend_id)
                cluster_status, request_counts = cluster.status, cluster.request_time.counts
                backend_status, backend_counts = backend.status, backend.backend_time.counts
            index = status // 100
            if index != status_at or not status_n:
                if status_n:
                    cluster_status[status_at] += status_n
                    if backend_id is not None:  # (the same for the whole run)
                        backend_status[status_at] += status_n
                status_at, status_n = index, 0
            status_n += 1
            seconds = now - started
            bucket = 0
            while seconds > bounds[bucket]:  # bisect_left(BOUNDS_SECONDS, seconds)
                bucket += 1
            if bucket != request_at or not request_n:
                if request_n:
                    request_counts[request_at] += request_n
                request_at, request_n = bucket, 0
            request_n += 1
            request_sum += seconds
            bytes_in_sum += bytes_in
            bytes_out_sum += bytes_out
            if backend_id is not None:
                seconds = 0.0 if response_at is None else response_at - started
                if seconds < 0.0:
                    seconds = 0.0
                bucket = 0
                while seconds > bounds[bucket]:
                    bucket += 1
                if bucket != backend_at or not backend_n:
                    if backend_n:
                        backend_counts[backend_at] += backend_n
                    backend_at, backend_n = bucket, 0
                backend_n += 1
                backend_sum += seconds
        _add_run(cluster, backend, request_sum, backend_sum, bytes_in_sum, bytes_out_sum)
        _add_counts(cluster, backend, status_at, status_n, request_at, request_n)
        if backend_n:
            backend_counts[backend_at] += backend_n

    def count_request(
        self,
        cluster_id: str | None,
        status: int,
        backend_id: str | None,
        seconds: float,
        backend_seconds: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        """One request, as a batch of one (for tools and tests; the worker counts batches).
        `status` 0: no response sent; `backend_seconds`: until the backend's response head."""
        routed = None if cluster_id is None else _Cluster(cluster_id)
        response_at = None if backend_id is None else backend_seconds
        end = (seconds, 0.0, response_at, status, None, routed, backend_id, bytes_in, bytes_out)
        self.count_requests([(*end, b"", None)])

    def listener(self, address: str) -> ListenerFigures:
        figures = self.listeners.get(address)
        if figures is None:
            figures = self.listeners[address] = ListenerFigures()
        return figures

    def answer(self, status: int) -> None:
        """A default answer (404, 503, ...) sent by the proxy itself."""
        self.answers[status] = self.answers.get(status, 0) + 1

    def tls_handshake(self, version: str | None) -> None:
        key = version or "unknown"
        self.tls_handshakes[key] = self.tls_handshakes.get(key, 0) + 1

    def tls_failure(self, version: str | None) -> None:
        key = version or "unknown"
        self.tls_failures[key] = self.tls_failures.get(key, 0) + 1

    # -- configuration changes --------------------------------------------------------------

    def remove_cluster(self, cluster_id: str) -> None:
        figures = self.clusters.pop(cluster_id, None)
        if figures is not None:
            self.retired.absorb(figures)

    def remove_backend(self, cluster_id: str, backend_id: str) -> None:
        figures = self.clusters.get(cluster_id)
        if figures is not None:
            figures.remove_backend(backend_id)

    def remove_listener(self, address: str) -> None:
        self.listeners.pop(address, None)

    def clear(self) -> None:
        """Start every figure again from zero (also `configure_metrics CLEAR`)."""
        self.clusters: dict[str | None, ClusterFigures] = {None: ClusterFigures()}
        self.retired = ClusterFigures()  # totals of removed clusters
        self.listeners: dict[str, ListenerFigures] = {}
        self.answers: dict[int, int] = {}
        self.tls_handshakes: dict[str, int] = {}
        self.tls_failures: dict[str, int] = {}

    # -- reading (main asks) ----------------------------------------------------------------

    def snapshot(self, detail: MetricDetail, options: QueryMetricsOptions) -> WorkerMetrics:
        proxy = self._process_figures()
        clusters: dict[str, ClusterMetrics] = {}
        if detail >= MetricDetail.DETAIL_CLUSTER and not options.no_clusters:
            wanted = set(options.cluster_ids)
            with_backends = detail >= MetricDetail.DETAIL_BACKEND
            backend_gauges = self._backend_gauges() if with_backends else {}
            for cluster_id, figures in self.clusters.items():
                if cluster_id is None or (wanted and cluster_id not in wanted):
                    continue
                clusters[cluster_id] = self._cluster_metrics(
                    cluster_id, figures, with_backends, backend_gauges, options
                )
        return WorkerMetrics(proxy=_select(proxy, options.metric_names), clusters=clusters)

    def available(self) -> AvailableMetrics:
        """The names `query_metrics list` shows (labels stripped)."""
        snapshot = self.snapshot(MetricDetail.DETAIL_BACKEND, QueryMetricsOptions())
        cluster_names = {name for c in snapshot.clusters.values() for name in c.cluster}
        return AvailableMetrics(
            proxy_metrics=sorted({key.partition(":")[0] for key in snapshot.proxy}),
            cluster_metrics=sorted(cluster_names),
        )

    def _process_figures(self) -> dict[str, FilteredMetrics]:
        total = ClusterFigures()
        for figures in (self.retired, *self.clusters.values()):
            total.absorb(figures)
        proxy: dict[str, FilteredMetrics] = {}
        total.export(proxy)
        for address, listener in self.listeners.items():
            proxy[f"listener.accepted:{address}"] = _count(listener.accepted)
            proxy[f"listener.active:{address}"] = _gauge(listener.active)
        for status, count in self.answers.items():
            proxy[f"http.answers:{status}"] = _count(count)
        for version, count in self.tls_handshakes.items():
            proxy[f"tls.handshakes:{version}"] = _count(count)
        for version, count in self.tls_failures.items():
            proxy[f"tls.handshake.failed:{version}"] = _count(count)
        for source in self.gauge_sources:
            proxy.update((name, _gauge(value)) for name, value in source().items())
        for source in self.counter_sources:
            proxy.update((name, _count(value)) for name, value in source().items())
        for histograms in self.histogram_sources:
            proxy.update((name, value.filtered()) for name, value in histograms().items())
        return proxy

    def _backend_gauges(self) -> dict[tuple[str, str], dict[str, FilteredMetrics]]:
        gauges: dict[tuple[str, str], dict[str, FilteredMetrics]] = {}
        for source in self.backend_gauge_sources:
            for cluster_id, backend_id, name, value in source():
                gauges.setdefault((cluster_id, backend_id), {})[name] = _gauge(value)
        return gauges

    def _cluster_metrics(
        self,
        cluster_id: str,
        figures: ClusterFigures,
        with_backends: bool,
        backend_gauges: dict[tuple[str, str], dict[str, FilteredMetrics]],
        options: QueryMetricsOptions,
    ) -> ClusterMetrics:
        own: dict[str, FilteredMetrics] = {}
        figures.export(own)
        backends = []
        if with_backends:
            wanted = set(options.backend_ids)
            known = [b for c, b in backend_gauges if c == cluster_id and b not in figures.backends]
            for backend_id in [*figures.backends, *known]:
                if wanted and backend_id not in wanted:
                    continue
                values = dict(backend_gauges.get((cluster_id, backend_id), {}))
                if backend_id in figures.backends:
                    figures.backends[backend_id].export(values)
                metrics = _select(values, options.metric_names)
                backends.append(BackendMetrics(backend_id=backend_id, metrics=metrics))
        return ClusterMetrics(cluster=_select(own, options.metric_names), backends=backends)


def _select(values: dict[str, FilteredMetrics], names: list[str]) -> dict[str, FilteredMetrics]:
    if not names:
        return values
    wanted = set(names)
    return {key: value for key, value in values.items() if key.partition(":")[0] in wanted}
