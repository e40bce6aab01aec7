"""The Prometheus view of pysozu: the workers' latest figures plus main's own, merged.

`WorkersCollector` is a prometheus-client custom collector. Main feeds it the `WorkerMetrics`
its workers answered to `query_metrics` (`update`), and it turns them into `pysozu_*` metric
families at collect time: counters and histogram buckets summed over workers, gauges summed too
(a gauge counts things: connections, workers whose breaker is open). The label sets follow the
workers' detail level (process, cluster, backend): a figure a worker does not report (a removed
cluster, a level it does not keep) is simply absent, so series of removed clusters disappear.

`MainFigures` are the counters main bumps itself (restarts, upgrades, config requests).
`worker_metrics_requester(pool, timeout)` is the ready-made fan-out for main's `WorkerPool`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dataplane.command.messages import QueryMetricsOptions, Request
from dataplane.command.responses import FilteredMetrics, WorkerMetrics
from dataplane.main.figures import MainFigures  # its home before; tests import it here
from dataplane.main.tasks import Gather
from dataplane.main.workers import WorkerPool

WorkerAnswers = dict[str, WorkerMetrics | None]  # worker id -> figures, None: no answer in time
RequestWorkerMetrics = Callable[[Callable[[WorkerAnswers], None]], None]

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")
_SCOPE_PREFIX = {"process": "pysozu_", "cluster": "pysozu_cluster_", "backend": "pysozu_backend_"}


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter (name without _total), gauge or histogram
    help: str
    labels: tuple[str, ...]  # the label carried after the key's colon, if any


# worker key (labels stripped) -> (name after the scope prefix, kind, help, label, scopes)
_TABLE: dict[str, tuple[str, str, str, tuple[str, ...], str]] = {
    "http.status": ("http_requests", "counter", "HTTP requests by status class.",
                    ("status_class",), "pcb"),
    "bytes_in": ("received_bytes", "counter", "Bytes received from clients.", (), "pcb"),
    "bytes_out": ("sent_bytes", "counter", "Bytes sent to clients.", (), "pcb"),
    "request_time": ("request_duration_seconds", "histogram",
                     "Time from a request's first byte to its response's last byte.", (), "pc"),
    "backend_response_time": ("upstream_duration_seconds", "histogram",
                              "Time spent on the backend: connection to last response byte.",
                              (), "pcb"),
    "backend.connections.error": ("upstream_connect_failures", "counter",
                                  "Failed connections to backends.", (), "pcb"),
    "backend.tls.errors": ("upstream_tls_failures", "counter",
                           "TLS handshakes or verifications with backends that failed.", (),
                           "pcb"),
    "backend.connect.retries": ("upstream_connect_retries", "counter",
                                "Connections to a backend retried after a failure.", (), "pcb"),
    "circuit.open": ("circuit_open", "gauge",
                     "Workers whose circuit breaker for this backend is open.", (), "b"),
    "listener.accepted": ("listener_accepted_connections", "counter",
                          "Client connections accepted.", ("listener",), "p"),
    "listener.active": ("listener_active_connections", "gauge",
                        "Client connections open now.", ("listener",), "p"),
    "http.answers": ("http_default_answers", "counter",
                     "Answers sent by the proxy itself (404, 503, ...).", ("status",), "p"),
    "tls.handshakes": ("tls_handshakes", "counter", "TLS handshakes completed, by version.",
                       ("version",), "p"),
    "tls.handshake.failed": ("tls_handshake_failures", "counter",
                             "TLS handshakes failed, by version.", ("version",), "p"),
    "tls.cert.min_expires_at_seconds": ("tls_certificate_min_expiry_timestamp_seconds", "gauge",
                                        "Soonest end of validity of a served certificate "
                                        "(unix time; 0: no certificate).", (), "p"),
    "tls.cert.expired": ("tls_certificates_expired", "gauge",
                         "Served certificates whose validity has ended.", (), "p"),
}  # fmt: skip


def _earliest(a: int, b: int) -> int:
    """The earlier of two timestamps, 0 standing for none."""
    return min(a, b) if a and b else a or b


# Gauges that every worker reports alike (they describe the shared state): combined, not summed.
_COMBINED: dict[str, Callable[[int, int], int]] = {
    "tls.cert.min_expires_at_seconds": _earliest,
    "tls.cert.expired": max,
}
_IGNORED = {"http.requests"}  # the sum of http.status.*: Prometheus sums by itself


def family_of(scope: str, key: str) -> tuple[Family, str | None] | None:
    """The family of a worker key in a scope, and the value of its label if it has one."""
    base, colon, label = key.partition(":")
    if base.startswith("http.status."):
        base, label, colon = "http.status", base.removeprefix("http.status."), ":"
    row = _TABLE.get(base)
    if row is None or scope[0] not in row[4]:
        return None
    suffix, kind, help_text, labels, _scopes = row
    family = Family(_SCOPE_PREFIX[scope] + suffix, kind, help_text, labels)
    return family, (label if colon else None)


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.sum = 0


class _Merged:
    """Figures of one scope (process, a cluster, a backend) summed over workers."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.histograms: dict[str, _Histogram] = {}

    def add(self, metrics: dict[str, FilteredMetrics]) -> None:
        for key, metric in metrics.items():
            inner = metric.inner
            if inner.histogram is not None:
                merged = self.histograms.setdefault(key, _Histogram())
                merged.count += inner.histogram.count
                merged.sum += inner.histogram.sum
                for bucket in inner.histogram.buckets:
                    merged.buckets[bucket.le] = merged.buckets.get(bucket.le, 0) + bucket.count
            elif inner.count is not None or inner.gauge is not None:
                value = (inner.count if inner.count is not None else inner.gauge) or 0
                combine = _COMBINED.get(key)
                if combine is not None and key in self.values:
                    self.values[key] = combine(self.values[key], value)
                else:
                    self.values[key] = self.values.get(key, 0) + value
                self.kinds[key] = "counter" if inner.count is not None else "gauge"


class WorkersCollector(Collector):
    def __init__(self, main: MainFigures) -> None:
        self.main = main
        self.latest: dict[str, WorkerMetrics] = {}
        self.answered: dict[str, bool] = {}

    def update(self, answers: WorkerAnswers) -> None:
        """The workers alive now and what each answered; a silent one keeps its last figures."""
        for gone in set(self.latest) - set(answers):
            del self.latest[gone]
        self.answered = {worker: metrics is not None for worker, metrics in answers.items()}
        for worker, metrics in answers.items():
            if metrics is None:
                self.main.scrape_timeouts[worker] = self.main.scrape_timeouts.get(worker, 0) + 1
            else:
                self.latest[worker] = metrics

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        process, clusters, backends = self._merge()
        scopes: list[tuple[str, tuple[str, ...], _Merged]] = [("process", (), process)]
        scopes += [("cluster", (cluster,), merged) for cluster, merged in clusters.items()]
        scopes += [("backend", pair, merged) for pair, merged in backends.items()]
        for scope, labels, merged in scopes:
            for key, value in merged.values.items():
                if key in _IGNORED:
                    continue
                self._add_value(families, scope, labels, key, merged.kinds[key], value)
            for key, histogram in merged.histograms.items():
                self._add_histogram(families, scope, labels, key, histogram)
        yield from families.values()
        yield from self._main_families()

    def _merge(
        self,
    ) -> tuple[_Merged, dict[str, _Merged], dict[tuple[str, str], _Merged]]:
        process = _Merged()
        clusters: dict[str, _Merged] = {}
        backends: dict[tuple[str, str], _Merged] = {}
        for metrics in self.latest.values():
            process.add(metrics.proxy)
            for cluster_id, cluster in metrics.clusters.items():
                clusters.setdefault(cluster_id, _Merged()).add(cluster.cluster)
                for backend in cluster.backends:
                    key = (cluster_id, backend.backend_id)
                    backends.setdefault(key, _Merged()).add(backend.metrics)
        return process, clusters, backends

    @staticmethod
    def _family(scope: str, key: str, kind: str) -> tuple[Family, str | None] | None:
        """The family of a key; None when the key is unusable (a label where none goes)."""
        found = family_of(scope, key)
        if found is not None:
            family, label = found
            return found if (label is None) != bool(family.labels) else None
        # A figure without a row (buffer use, dropped access logs, ...): a derived name.
        base, colon, _label = key.partition(":")
        if colon:
            return None
        return Family(
            _SCOPE_PREFIX[scope] + _UNSAFE.sub("_", base), kind, f"Worker {base}.", ()
        ), None

    def _add_value(
        self,
        families: dict[str, Metric],
        scope: str,
        labels: tuple[str, ...],
        key: str,
        kind: str,
        value: int,
    ) -> None:
        found = self._family(scope, key, kind)
        if found is None or found[0].kind == "histogram":
            return
        family, label_value = found
        metric = families.get(family.name)
        if metric is None:
            maker = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            names = [*_scope_labels(scope), *family.labels]
            metric = families[family.name] = maker(family.name, family.help, labels=names)
        extra = () if label_value is None else (label_value,)
        metric.add_metric([*labels, *extra], value)  # type: ignore[attr-defined]

    def _add_histogram(
        self,
        families: dict[str, Metric],
        scope: str,
        labels: tuple[str, ...],
        key: str,
        histogram: _Histogram,
    ) -> None:
        found = self._family(scope, key, "histogram")
        if found is None or found[0].kind != "histogram" or found[1] is not None:
            return
        family = found[0]
        metric = families.get(family.name)
        if metric is None:
            metric = HistogramMetricFamily(family.name, family.help, labels=_scope_labels(scope))
            families[family.name] = metric
        buckets = [(repr(le / 1_000_000), count) for le, count in sorted(histogram.buckets.items())]
        buckets.append(("+Inf", histogram.count))
        assert isinstance(metric, HistogramMetricFamily)
        metric.add_metric(list(labels), buckets, histogram.sum / 1_000_000)

    def _main_families(self) -> Iterator[Metric]:
        main = self.main
        yield GaugeMetricFamily(
            "pysozu_workers_alive", "Workers running now.", value=main.workers_alive()
        )
        yield CounterMetricFamily(
            "pysozu_worker_restarts", "Workers started again after dying.", main.worker_restarts
        )
        yield CounterMetricFamily(
            "pysozu_worker_upgrades", "Workers replaced by upgrades.", main.worker_upgrades
        )
        yield CounterMetricFamily(
            "pysozu_main_upgrades", "Main processes replaced by upgrades.", main.main_upgrades
        )
        requests = CounterMetricFamily(
            "pysozu_config_requests",
            "Command requests answered by main, by verb and result.",
            labels=["verb", "result"],
        )
        for (verb, result), count in sorted(main.config_requests.items()):
            requests.add_metric([verb, result], count)
        yield requests
        timeouts = CounterMetricFamily(
            "pysozu_worker_scrape_timeouts",
            "Scrapes for which this worker did not answer in time (its last figures were used).",
            labels=["worker"],
        )
        for worker, count in sorted(main.scrape_timeouts.items()):
            timeouts.add_metric([worker], count)
        yield timeouts
        up = GaugeMetricFamily(
            "pysozu_worker_scrape_up",
            "1 if the worker answered the last scrape in time, else 0.",
            labels=["worker"],
        )
        for worker, answered in sorted(self.answered.items()):
            up.add_metric([worker], 1 if answered else 0)
        yield up
        yield CounterMetricFamily(
            "pysozu_scrape_deadlines_missed",
            "Scrapes answered at the endpoint's deadline before main had gathered the workers.",
            main.scrape_deadlines_missed,
        )


def _scope_labels(scope: str) -> list[str]:
    return {"process": [], "cluster": ["cluster"], "backend": ["cluster", "backend"]}[scope]


def worker_metrics_requester(pool: WorkerPool, timeout: float) -> RequestWorkerMetrics:
    """`request_worker_metrics` for the endpoint: `query_metrics` to every live worker."""

    def request(done: Callable[[WorkerAnswers], None]) -> None:
        workers = [str(worker.id) for worker in pool.live()]
        gather = pool.scatter(Request.of(query_metrics=QueryMetricsOptions()), timeout)

        def finished(gather: Gather) -> None:
            answers: WorkerAnswers = dict.fromkeys(workers)
            for worker_id, content in gather.contents().items():
                if content.kind == "worker_metrics":
                    answers[str(worker_id)] = content.value
            done(answers)

        if gather.done:
            finished(gather)
        else:
            gather.on_done = finished

    return request
