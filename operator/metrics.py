"""Prometheus metrics of the ingress controller, served at `/metrics` on the health port.

Every name starts with `pysozu_ingress_`. Two sources:

- events counted as they happen (`ControllerMetrics.round`): reconcile rounds by result, the
  config push duration, the last successful sync;
- figures the controller's parts already keep, read at scrape time (`Sources`): leadership,
  readiness, Ingresses served, failing closed and conflicting, problems by reason, API and
  dataplane errors, re-lists, sweeps, publish-Service watches, task restarts, Events posted;
  and what was pushed (state_metrics.py): config hash, cluster info, certificate expiry.

Labels are bounded: results, error kinds, reasons, resources and task names are fixed sets;
the cluster info has one series per dataplane cluster made, the expiry one per TLS Secret
named by an Ingress served (no host or path label anywhere).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingress_operator.state_metrics import ClusterInfo, PushedSummary, certificate_expiries
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ingress_operator.controller import Controller
    from ingress_operator.render import Problem

PREFIX = "pysozu_ingress_"
RESULTS = ("pushed", "unchanged", "failed")
# Error kinds: the Kubernetes API (KubeApi.failures), the dataplane (a round that failed, a
# request it refused).
ERROR_KINDS = (
    "api_timeout",
    "api_unreachable",
    "api_client",
    "api_server",
    "dataplane",
    "dataplane_refused",
)
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _zero() -> int:
    return 0


def _none() -> Mapping[str, int]:
    return {}


@dataclass(slots=True)
class Sources:
    """Callables reading the controller's parts at scrape time (defaults: nothing to say)."""

    leader: Callable[[], bool] = lambda: False
    ready: Callable[[], bool] = lambda: False
    # (Ingresses served, of which failing closed) and Ingresses per problem reason
    ingresses: Callable[[], tuple[int, int]] = lambda: (0, 0)
    problems: Callable[[], Mapping[str, int]] = _none
    api_failures: Callable[[], Mapping[str, int]] = _none
    refused_requests: Callable[[], int] = _zero
    relists: Callable[[], Mapping[str, int]] = _none
    sweeps: Callable[[], int] = _zero
    swept: Callable[[], int] = _zero
    publish_watches: Callable[[], int] = _zero
    task_restarts: Callable[[], Mapping[str, int]] = _none
    events_posted: Callable[[], int] = _zero
    conflicting: Callable[[], int] = _zero  # Ingresses that lost a claim (a Conflict)
    # What was pushed (state_metrics.py): its hash, its clusters, the certificates named.
    config_hash: Callable[[], int] = _zero
    clusters: Callable[[], Iterable[ClusterInfo]] = tuple
    certificates: Callable[[], Iterable[tuple[str, str, float]]] = tuple


@dataclass(slots=True)
class ControllerMetrics:
    sources: Sources = field(default_factory=Sources)
    clock: Callable[[], float] = time.time
    reconciles: Counter[str] = field(default_factory=Counter)  # result -> rounds
    failed_rounds: int = 0
    last_sync: float = 0.0  # unix time
    push_buckets: list[int] = field(default_factory=lambda: [0] * len(PUSH_BUCKETS))
    push_count: int = 0
    push_sum: float = 0.0
    registry: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        # Our own registry: no process-wide collectors (a test makes many of these).
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Live(self))

    def round(self, result: str, seconds: float) -> None:
        """A reconcile round ended (Reconciler.on_round)."""
        self.reconciles[result] += 1
        if result == "failed":
            self.failed_rounds += 1
            return
        self.last_sync = self.clock()
        if result == "pushed":
            self.push_count += 1
            self.push_sum += seconds
            for i, bound in enumerate(PUSH_BUCKETS):
                if seconds <= bound:
                    self.push_buckets[i] += 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def counted(self) -> Iterator[Metric]:
        reconciles = CounterMetricFamily(
            PREFIX + "reconciles",
            "Reconcile rounds (render, diff, push) by result: pushed (sent changes), unchanged, "
            "failed (the dataplane was unreachable or refused a request).",
            labels=["result"],
        )
        for result in RESULTS:
            reconciles.add_metric([result], self.reconciles[result])
        yield reconciles
        cumulative = [
            (str(bound), count)
            for bound, count in zip(PUSH_BUCKETS, self.push_buckets, strict=True)
        ]
        yield HistogramMetricFamily(
            PREFIX + "config_push_duration_seconds",
            "Duration of reconcile rounds that pushed changes to the dataplane "
            "(render, diff and send).",
            buckets=[*cumulative, ("+Inf", self.push_count)],
            sum_value=self.push_sum,
        )
        yield _gauge(
            "last_successful_sync_timestamp_seconds",
            "Unix time the dataplane last held the desired state (0: never yet).",
            self.last_sync,
        )


class _Live(Collector):
    """The figures read at scrape time."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked names: collect() is the truth, and cheap

    def collect(self) -> Iterator[Metric]:
        s = self.metrics.sources
        yield from self.metrics.counted()
        yield _gauge("leader", "1 if this replica holds the Lease (writes Ingress status).",
                     int(s.leader()))  # fmt: skip
        yield _gauge("ready", "1 if the dataplane holds the state (/readyz answers 200).",
                     int(s.ready()))  # fmt: skip
        served, refused = s.ingresses()
        ingresses = GaugeMetricFamily(
            PREFIX + "ingresses",
            "Ingresses of our class in the last rendering: served (routes work), failed_closed "
            "(an access restriction pysozu cannot enforce: routes answer 503); conflicting: "
            "those with a route another Ingress serves (counted in the others too).",
            labels=["state"],
        )
        ingresses.add_metric(["served"], served - refused)
        ingresses.add_metric(["failed_closed"], refused)
        ingresses.add_metric(["conflicting"], s.conflicting())
        yield ingresses
        yield from _pushed(s)
        problems = GaugeMetricFamily(
            PREFIX + "ingress_problems",
            "Problems of the last rendering (reported as Events) by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(s.problems().items()):
            problems.add_metric([reason], count)
        yield problems
        errors = CounterMetricFamily(
            PREFIX + "errors",
            "Errors by kind: Kubernetes API calls (timeout, unreachable, 4xx client, 5xx "
            "server), dataplane rounds that failed, requests the dataplane refused.",
            labels=["kind"],
        )
        counts = Counter(s.api_failures())
        counts["dataplane"] = self.metrics.failed_rounds
        counts["dataplane_refused"] = s.refused_requests()
        for kind in ERROR_KINDS:
            errors.add_metric([kind], counts.get(kind, 0))
        yield errors
        relists = CounterMetricFamily(
            PREFIX + "relists",
            "Watches restarted with a new listing (410 Gone), by resource.",
            labels=["resource"],
        )
        for resource, count in sorted(s.relists().items()):
            relists.add_metric([resource], count)
        yield relists
        yield _counter("sweeps", "Listings compared with the indices (after re-lists and "
                       "periodically).", s.sweeps())  # fmt: skip
        yield _counter("swept_objects", "Objects dropped because a listing no longer had "
                       "them (deleted while a watch was down).", s.swept())  # fmt: skip
        yield _counter("publish_service_watches", "Watches of the --publish-service Service "
                       "started (each restart counts).", s.publish_watches())  # fmt: skip
        yield _counter("events_posted", "Kubernetes Events posted on Ingresses.",
                       s.events_posted())  # fmt: skip
        restarts = CounterMetricFamily(
            PREFIX + "task_restarts",
            "Supervised loops restarted after an exception (see /healthz).",
            labels=["task"],
        )
        for task, count in sorted(s.task_restarts().items()):
            restarts.add_metric([task], count)
        yield restarts


def _pushed(s: Sources) -> Iterator[Metric]:
    yield _gauge("config_hash", "Hash (53 bits) of the last state the dataplane took: equal "
                 "on replicas serving the same configuration (0: none yet).",
                 s.config_hash())  # fmt: skip
    info = GaugeMetricFamily(
        PREFIX + "cluster_info",
        "1 per dataplane cluster the controller made, with the Kubernetes names it serves: "
        "join pysozu_cluster_*{cluster} on cluster (service is empty for an Ingress's own "
        "answer clusters).",
        labels=["cluster", "namespace", "ingress", "service"],
    )
    for row in s.clusters():
        info.add_metric(list(row), 1)
    yield info
    expiry = GaugeMetricFamily(
        PREFIX + "certificate_expiry_timestamp_seconds",
        "Expiry (unix time) of the leaf certificate of each TLS Secret an Ingress served names.",
        labels=["namespace", "secret"],
    )
    for namespace, secret, not_after in s.certificates():
        expiry.add_metric([namespace, secret], not_after)
    yield expiry


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def problem_counts(problems: Iterable[Problem]) -> dict[str, int]:
    """Distinct Ingresses per problem reason."""
    return dict(Counter(reason for reason, _ in {(p.reason, p.ingress) for p in problems}))


def for_controller(controller: Controller) -> ControllerMetrics:
    """The metrics of a controller, its reconciler reporting each round."""
    reconciler, status, api = controller.reconciler, controller.status, controller.api
    sweeper, published, beats = (
        controller.sweeper,
        controller.published,
        controller.supervisor.beats,
    )

    def ingresses() -> tuple[int, int]:
        rendered = reconciler.last_rendered
        return (len(rendered.served), len(rendered.refused)) if rendered else (0, 0)

    def problems() -> dict[str, int]:
        rendered = reconciler.last_rendered
        return problem_counts(rendered.problems) if rendered else {}

    summary, indices = PushedSummary(), controller.indices

    def certificates() -> Iterable[tuple[str, str, float]]:
        rendered = reconciler.last_rendered
        return certificate_expiries(rendered, indices.ingresses, indices.secrets)

    sources = Sources(
        leader=lambda: status is not None and status.elector.is_leader,
        ready=lambda: reconciler.ready,
        ingresses=ingresses,
        problems=problems,
        api_failures=lambda: api.failures if api is not None else {},
        refused_requests=lambda: reconciler.refused_requests,
        relists=lambda: sweeper.relists if sweeper is not None else {},
        sweeps=lambda: sweeper.sweeps if sweeper is not None else 0,
        swept=lambda: sweeper.removed if sweeper is not None else 0,
        publish_watches=lambda: published.watches if published is not None else 0,
        task_restarts=lambda: {name: beat.restarts for name, beat in beats.items()},
        events_posted=lambda: controller.events.posted,
        conflicting=lambda: problems().get("Conflict", 0),
        config_hash=lambda: summary.config_hash(reconciler.pushed),
        clusters=lambda: summary.clusters(reconciler.pushed),
        certificates=certificates,
    )
    metrics = ControllerMetrics(sources)
    reconciler.on_round = metrics.round
    return metrics
