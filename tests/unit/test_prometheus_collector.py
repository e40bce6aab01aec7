"""The collector: workers' figures merged into pysozu_* families; the endpoint's scrape rounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from dataplane.command.messages import MetricDetail, QueryMetricsOptions, Request
from dataplane.command.responses import (
    FilteredMetrics,
    FilteredMetricsInner,
    ResponseContent,
    ResponseStatus,
    WorkerMetrics,
    WorkerResponse,
)
from dataplane.main.prometheus import (
    MainFigures,
    WorkerAnswers,
    WorkersCollector,
    family_of,
    worker_metrics_requester,
)
from dataplane.main.prometheus_http import PrometheusEndpoint
from dataplane.main.tasks import Gather
from dataplane.proxy.observability.metrics import MetricsRegistry


def worker(status: int = 200, cluster: str = "api") -> WorkerMetrics:
    registry = MetricsRegistry()
    registry.count_request(cluster, status, f"{cluster}-0", 0.003, 0.002, 10, 100)
    registry.listener("0.0.0.0:80").opened()
    registry.gauge_sources.append(lambda: {"buffer.in_use": 2})
    return registry.snapshot(MetricDetail.DETAIL_BACKEND, QueryMetricsOptions())


def scrape(collector: WorkersCollector) -> dict[tuple[Any, ...], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


def test_workers_are_summed() -> None:
    collector = WorkersCollector(MainFigures(workers_alive=lambda: 2))
    collector.update({"0": worker(200), "1": worker(500)})
    found = scrape(collector)
    assert found[("pysozu_http_requests_total", ("status_class", "2xx"))] == 1
    assert found[("pysozu_http_requests_total", ("status_class", "5xx"))] == 1
    assert found[("pysozu_sent_bytes_total",)] == 200
    assert found[("pysozu_cluster_received_bytes_total", ("cluster", "api"))] == 20
    backend = ("pysozu_backend_http_requests_total", ("backend", "api-0"), ("cluster", "api"))
    assert found[(*backend, ("status_class", "5xx"))] == 1
    assert found[("pysozu_listener_active_connections", ("listener", "0.0.0.0:80"))] == 2
    assert found[("pysozu_buffer_in_use",)] == 4  # a figure without a row: derived name
    upstream = ("pysozu_backend_upstream_duration_seconds_bucket",)
    assert found[(*upstream, ("backend", "api-0"), ("cluster", "api"), ("le", "0.0025"))] == 2
    assert found[("pysozu_cluster_request_duration_seconds_count", ("cluster", "api"))] == 2
    assert found[("pysozu_workers_alive",)] == 2
    assert not any(name == "pysozu_http_requests" for name, *_ in found)


def test_silent_worker_keeps_its_last_figures_and_is_counted() -> None:
    figures = MainFigures()
    collector = WorkersCollector(figures)
    collector.update({"0": worker(), "1": worker()})
    collector.update({"0": worker(), "1": None})
    found = scrape(collector)
    assert found[("pysozu_http_requests_total", ("status_class", "2xx"))] == 2
    assert found[("pysozu_worker_scrape_timeouts_total", ("worker", "1"))] == 1
    assert found[("pysozu_worker_scrape_up", ("worker", "1"))] == 0
    assert found[("pysozu_worker_scrape_up", ("worker", "0"))] == 1


def test_gone_worker_is_forgotten() -> None:
    collector = WorkersCollector(MainFigures())
    collector.update({"0": worker(cluster="a"), "1": worker(cluster="b")})
    collector.update({"0": worker(cluster="a")})
    found = scrape(collector)
    assert ("pysozu_cluster_sent_bytes_total", ("cluster", "b")) not in found
    assert ("pysozu_worker_scrape_up", ("worker", "1")) not in found


def test_main_figures() -> None:
    figures = MainFigures(workers_alive=lambda: 3)
    figures.worker_restarts = 2
    figures.config_request("add_cluster", True)
    figures.config_request("add_cluster", False)
    figures.config_request("add_cluster", True)
    found = scrape(WorkersCollector(figures))
    assert found[("pysozu_worker_restarts_total",)] == 2
    ok = ("pysozu_config_requests_total", ("result", "ok"), ("verb", "add_cluster"))
    assert found[ok] == 2
    assert found[("pysozu_config_requests_total", ("result", "failure"), ("verb", "add_cluster"))]


def test_family_table() -> None:
    family, label = family_of("cluster", "http.status.4xx") or (None, None)
    assert family is not None and family.name == "pysozu_cluster_http_requests"
    assert label == "4xx"
    assert family_of("backend", "request_time") is None  # not kept per backend
    family, label = family_of("process", "listener.accepted:[::1]:80") or (None, None)
    assert family is not None and label == "[::1]:80"


class FakeTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def add(self, *_: Any) -> None: ...
    def modify(self, *_: Any) -> None: ...
    def remove(self, *_: Any) -> None: ...

    def call_later(self, _delay: float, callback: Callable[[], None]) -> FakeTimer:
        self.timers.append(FakeTimer(callback))
        return self.timers[-1]


def endpoint_with(requests: list[Callable[[WorkerAnswers], None]]) -> PrometheusEndpoint:
    collector = WorkersCollector(MainFigures())
    return PrometheusEndpoint("127.0.0.1:0", FakeLoop(), collector, requests.append)


def test_concurrent_scrapes_share_one_round() -> None:
    requests: list[Callable[[WorkerAnswers], None]] = []
    endpoint = endpoint_with(requests)
    served: list[str] = []
    endpoint.collect_async(lambda: served.append("a"))
    endpoint.collect_async(lambda: served.append("b"))
    assert len(requests) == 1 and served == []
    requests[0]({"0": worker()})
    assert served == ["a", "b"]
    assert isinstance(endpoint.loop, FakeLoop) and endpoint.loop.timers[0].cancelled
    assert "0" in endpoint.collector.latest


def test_deadline_answers_then_a_late_answer_freshens_the_next_scrape() -> None:
    requests: list[Callable[[WorkerAnswers], None]] = []
    endpoint = endpoint_with(requests)
    served: list[str] = []
    endpoint.collect_async(lambda: served.append("a"))
    assert isinstance(endpoint.loop, FakeLoop)
    endpoint.loop.timers[0].callback()  # the deadline
    assert served == ["a"]
    assert endpoint.collector.main.scrape_deadlines_missed == 1
    requests[0]({"0": worker()})  # late: nobody waits, but the figures are kept
    assert served == ["a"] and "0" in endpoint.collector.latest
    endpoint.collect_async(lambda: served.append("b"))
    requests[1]({"0": worker()})
    assert served == ["a", "b"]


def test_render_negotiates_the_format() -> None:
    endpoint = endpoint_with([])
    _, plain = endpoint.render("")
    _, open_metrics = endpoint.render("application/openmetrics-text; version=1.0.0")
    assert plain.startswith("text/plain")
    assert open_metrics.startswith("application/openmetrics-text")


class FakeWorker:
    def __init__(self, worker_id: int) -> None:
        self.id = worker_id


class FakePool:
    def __init__(self, ids: list[int]) -> None:
        self.workers = [FakeWorker(i) for i in ids]
        self.gathers: list[Gather] = []

    def live(self) -> list[FakeWorker]:
        return self.workers

    def scatter(self, request: Request, timeout: float | None) -> Gather:
        assert request.verb == "query_metrics"
        gather = Gather(request, [w.id for w in self.workers], timeout)
        self.gathers.append(gather)
        return gather


def test_requester_over_the_worker_pool() -> None:
    pool = FakePool([0, 1, 2])
    request = worker_metrics_requester(pool, 1.0)  # type: ignore[arg-type]
    answers: list[WorkerAnswers] = []
    request(answers.append)
    gather = pool.gathers[0]
    content = ResponseContent.of(worker_metrics=worker())
    gather.answer(0, WorkerResponse(id="q-0", status=ResponseStatus.OK, content=content))
    gather.answer(1, WorkerResponse(id="q-1", status=ResponseStatus.FAILURE, message="no"))
    assert answers == []
    gather.expire()
    assert list(answers[0]) == ["0", "1", "2"]
    assert answers[0]["0"] == worker() and answers[0]["1"] is None and answers[0]["2"] is None


def test_requester_without_workers_answers_at_once() -> None:
    answers: list[WorkerAnswers] = []
    worker_metrics_requester(FakePool([]), 1.0)(answers.append)  # type: ignore[arg-type]
    assert answers == [{}]


def test_keys_with_a_misplaced_label_are_left_out() -> None:
    strange = WorkerMetrics(
        proxy={
            "bytes_in:x": FilteredMetrics(inner=FilteredMetricsInner(count=5)),
            "listener.accepted": FilteredMetrics(inner=FilteredMetricsInner(count=5)),
            "new.figure:x": FilteredMetrics(inner=FilteredMetricsInner(count=5)),
            "new.figure": FilteredMetrics(inner=FilteredMetricsInner(gauge=7)),
        }
    )
    collector = WorkersCollector(MainFigures())
    collector.update({"0": strange})
    found = scrape(collector)
    assert found[("pysozu_new_figure",)] == 7
    names = {name for name, *_ in found}
    assert "pysozu_received_bytes_total" not in names
    assert "pysozu_listener_accepted_connections_total" not in names


def test_answers_of_an_older_round_never_overwrite_newer_ones() -> None:
    requests: list[Callable[[WorkerAnswers], None]] = []
    endpoint = endpoint_with(requests)
    assert isinstance(endpoint.loop, FakeLoop)
    endpoint.collect_async(lambda: None)
    endpoint.loop.timers[0].callback()  # round 1 cut by its deadline
    endpoint.collect_async(lambda: None)
    requests[1]({"0": worker(cluster="new")})
    requests[0]({"0": worker(cluster="old")})  # round 1, too late
    assert list(endpoint.collector.latest["0"].clusters) == ["new"]
