"""The Prometheus endpoint in main's real EventLoop, scraped by a real HTTP client on 127.0.0.1.

The loop runs in the test's main thread; the client (httpx, raw sockets) runs its whole script in
one helper thread, and the loop stops when the script is over. Workers are stood in for by
`request_worker_metrics` functions built on real `MetricsRegistry` snapshots.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from dataplane.command.messages import MetricDetail, QueryMetricsOptions
from dataplane.command.responses import WorkerMetrics
from dataplane.main.loop import EventLoop
from dataplane.main.prometheus import MainFigures, WorkerAnswers, WorkersCollector
from dataplane.main.prometheus_http import PrometheusEndpoint
from dataplane.proxy.observability.metrics import MetricsRegistry

pytestmark = pytest.mark.timeout(30)
Done = Callable[[WorkerAnswers], None]


def snapshot(registry: MetricsRegistry) -> WorkerMetrics:
    return registry.snapshot(MetricDetail.DETAIL_BACKEND, QueryMetricsOptions())


def busy_worker() -> MetricsRegistry:
    registry = MetricsRegistry()
    registry.count_request("api", 200, "api-0", 0.002, 0.0015, 100, 1000)
    registry.count_request("api", 503, "api-0", 0.2, 0.19, 50, 10)
    registry.listener("127.0.0.1:8080").opened()
    registry.answer(404)
    return registry


def serve(
    requester: Callable[[EventLoop], Callable[[Done], None]],
    script: Callable[[str], Any],
    deadline: float = 2.0,
    **options: Any,
) -> tuple[Any, MainFigures]:
    """Run `script(base_url)` in a thread against an endpoint served by this thread's loop."""
    loop = EventLoop()
    figures = MainFigures(workers_alive=lambda: 2)
    endpoint = PrometheusEndpoint(
        "127.0.0.1:0",
        loop,
        WorkersCollector(figures),
        requester(loop),
        deadline=deadline,
        **options,
    )
    endpoint.start()
    outcome: dict[str, Any] = {}

    def client() -> None:
        try:
            outcome["value"] = script(f"http://{endpoint.bound_address}")
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=client, daemon=True)
    thread.start()

    def watch() -> None:
        if thread.is_alive():
            loop.call_later(0.01, watch)
        else:
            loop.stop()

    loop.call_later(0.01, watch)
    loop.run()
    endpoint.close()
    loop.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], figures


def answering(*workers: MetricsRegistry) -> Callable[[EventLoop], Callable[[Done], None]]:
    def requester(loop: EventLoop) -> Callable[[Done], None]:
        def request(done: Done) -> None:
            answers: WorkerAnswers = {str(i): snapshot(r) for i, r in enumerate(workers)}
            loop.call_later(0.01, lambda: done(answers))

        return request

    return requester


def samples(text: str, parser: Callable[[str], Any] = parse_text) -> dict[tuple[Any, ...], float]:
    found = {}
    for family in parser(text):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


def test_scrape_merges_workers_with_exact_values_and_labels() -> None:
    def script(base: str) -> httpx.Response:
        return httpx.get(f"{base}/metrics", timeout=5)

    response, _ = serve(answering(busy_worker(), busy_worker()), script)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("pysozu_http_requests_total", ("status_class", "2xx"))] == 2
    assert found[("pysozu_http_requests_total", ("status_class", "5xx"))] == 2
    cluster = ("pysozu_cluster_http_requests_total", ("cluster", "api"))
    assert found[(*cluster, ("status_class", "5xx"))] == 2
    key = ("pysozu_backend_sent_bytes_total", ("backend", "api-0"), ("cluster", "api"))
    assert found[key] == 2020
    buckets = ("pysozu_cluster_request_duration_seconds_bucket", ("cluster", "api"))
    assert found[(*buckets, ("le", "0.0025"))] == 2
    assert found[(*buckets, ("le", "+Inf"))] == 4
    total = ("pysozu_cluster_request_duration_seconds_sum", ("cluster", "api"))
    assert found[total] == pytest.approx(0.404)
    listener = ("pysozu_listener_active_connections", ("listener", "127.0.0.1:8080"))
    assert found[listener] == 2
    assert found[("pysozu_http_default_answers_total", ("status", "404"))] == 2
    assert found[("pysozu_workers_alive",)] == 2
    assert found[("pysozu_worker_scrape_up", ("worker", "1"))] == 1


def test_openmetrics_when_asked() -> None:
    def script(base: str) -> httpx.Response:
        accept = "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
        return httpx.get(f"{base}/metrics", headers={"Accept": accept}, timeout=5)

    response, _ = serve(answering(busy_worker()), script)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    found = samples(response.text, parse_openmetrics)
    assert found[("pysozu_http_requests_total", ("status_class", "2xx"))] == 1
    bucket = ("pysozu_request_duration_seconds_bucket", ("le", "0.25"))
    assert found[bucket] == 2


def test_silent_worker_is_reported_and_does_not_block_the_scrape() -> None:
    answering_worker = busy_worker()

    def requester(loop: EventLoop) -> Callable[[Done], None]:
        def request(done: Done) -> None:  # what main's gather does: worker 1 never answers
            answer = snapshot(answering_worker)
            loop.call_later(0.3, lambda: done({"0": answer, "1": None}))

        return request

    def script(base: str) -> list[tuple[float, str]]:
        timed = []
        for _ in range(2):
            started = time.monotonic()
            text = httpx.get(f"{base}/metrics", timeout=5).text
            timed.append((time.monotonic() - started, text))
        return timed

    timed, _ = serve(requester, script)
    for elapsed, _text in timed:
        assert 0.25 < elapsed < 1.5
    found = samples(timed[1][1])
    assert found[("pysozu_worker_scrape_timeouts_total", ("worker", "1"))] == 2
    assert found[("pysozu_worker_scrape_up", ("worker", "1"))] == 0
    assert found[("pysozu_worker_scrape_up", ("worker", "0"))] == 1
    assert found[("pysozu_http_requests_total", ("status_class", "2xx"))] == 1


def test_main_that_never_gathers_is_cut_by_the_endpoint_deadline() -> None:
    def requester(loop: EventLoop) -> Callable[[Done], None]:
        return lambda done: None

    def script(base: str) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        response = httpx.get(f"{base}/metrics", timeout=5)
        return time.monotonic() - started, response

    (elapsed, response), figures = serve(requester, script, deadline=0.4)
    assert response.status_code == 200
    assert 0.35 < elapsed < 2.0
    assert samples(response.text)[("pysozu_scrape_deadlines_missed_total",)] == 1
    assert figures.scrape_deadlines_missed == 1


def test_removed_clusters_leave_no_series() -> None:
    worker = busy_worker()
    states = iter(["before", "added", "removed"])

    def requester(loop: EventLoop) -> Callable[[Done], None]:
        def request(done: Done) -> None:
            state = next(states)
            if state == "added":
                for n in range(200):
                    worker.count_request(f"c{n}", 200, f"c{n}-b", 0.01, 0.005, 10, 10)
            if state == "removed":
                for n in range(200):
                    worker.remove_cluster(f"c{n}")
            done({"0": snapshot(worker)})

        return request

    def script(base: str) -> list[int]:
        return [len(samples(httpx.get(f"{base}/metrics", timeout=5).text)) for _ in range(3)]

    (before, added, removed), _ = serve(requester, script)
    assert added > before + 200 * 10
    assert removed == before


def raw_exchange(base: str, payload: bytes, wait_close: float = 5.0) -> bytes:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait_close) as sock:
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"\x00\xffgarbage\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000, b"431"),
    ],
)
def test_bad_requests_get_an_error_and_a_close(payload: bytes, status: bytes) -> None:
    answer, _ = serve(answering(busy_worker()), lambda base: raw_exchange(base, payload))
    assert answer.split(b" ", 2)[1] == status


def test_head_has_no_body() -> None:
    payload = b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, _ = serve(answering(busy_worker()), lambda base: raw_exchange(base, payload))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""


def test_slow_client_is_closed_and_others_are_served_meanwhile() -> None:
    def script(base: str) -> tuple[float, bytes, int]:
        started = time.monotonic()
        host, port = base.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as slow:
            slow.sendall(b"GET /metr")  # and nothing more
            served = httpx.get(f"{base}/metrics", timeout=5).status_code
            closed = slow.recv(100)
        return time.monotonic() - started, closed, served

    (elapsed, closed, served), _ = serve(answering(busy_worker()), script, connection_timeout=0.5)
    assert served == 200
    assert closed == b""
    assert 0.4 < elapsed < 3.0


def test_connections_beyond_the_limit_are_closed_at_accept() -> None:
    def script(base: str) -> tuple[list[bytes], int]:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)
            overflow = [sock.recv(1) if i >= 2 else b"open" for i, sock in enumerate(held)]
        finally:
            for sock in held:
                sock.close()
        return overflow, httpx.get(f"{base}/metrics", timeout=5).status_code

    (overflow, served), _ = serve(answering(busy_worker()), script, max_connections=2)
    assert overflow == [b"open", b"open", b""]
    assert served == 200
