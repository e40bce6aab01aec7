"""Main's Prometheus endpoint, wired to the supervisor: its loop, its workers, its figures.

`start_prometheus(supervisor, address)` binds `address` (`[prometheus] address`, or
`pysozu start --prometheus-address`) and serves `GET /metrics` from main's loop. Each scrape
asks every live worker for its figures (`query_metrics`) and waits at most `SCRAPE_DEADLINE`
seconds: a worker that is slow or dies meanwhile is shown as not scraped, never waited for.
Main's own counters (restarts, upgrades, command requests) are read as they are at that moment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.command.messages import ListenerType
from dataplane.command.responses import RunState
from dataplane.main.prometheus import WorkerAnswers, WorkersCollector, worker_metrics_requester
from dataplane.main.prometheus_http import PrometheusEndpoint

if TYPE_CHECKING:
    from dataplane.main.server import Supervisor

SCRAPE_DEADLINE = 3.0


def health_answer(supervisor: Supervisor, ready: bool) -> tuple[bool, str]:
    """`/healthz`: main's loop answers (this very answer) and a worker runs. `/readyz`:
    besides, not stopping, every live worker running, and at least one listener active.
    Probes GET these instead of starting a Python process per probe."""
    workers = supervisor.pool.live()
    running = [w for w in workers if w.run_state == RunState.RUNNING]
    if not running:
        return False, "no worker is running"
    if not ready:
        return True, f"ok: {len(running)} worker(s) running"
    if supervisor.stopping:
        return False, "stopping"
    if len(running) < len(workers):
        return False, f"{len(workers) - len(running)} worker(s) not running yet"
    active = [
        address
        for kind in ListenerType
        for address, listener in supervisor.state.listener_table(kind).items()
        if listener.active
    ]
    if not active:
        return False, "no listener is active"
    return True, f"ready: {len(running)} worker(s), {len(active)} active listener(s)"


def start_prometheus(
    supervisor: Supervisor, address: str, deadline: float = SCRAPE_DEADLINE
) -> PrometheusEndpoint:
    """Serve `/metrics` on `address` from main's loop; raises OSError if it cannot bind."""
    figures = supervisor.main_metrics
    # The workers' round ends a little before the scrape's deadline, so that a silent worker is
    # reported as such (scrape_up 0) rather than the whole scrape missing its deadline.
    ask_workers = worker_metrics_requester(supervisor.pool, max(0.1, deadline - 0.25))

    def request_worker_metrics(done: Callable[[WorkerAnswers], None]) -> None:
        figures.worker_restarts = supervisor.pool.restarts
        figures.worker_upgrades = supervisor.figures.worker_upgrades
        figures.main_upgrades = supervisor.figures.main_upgrades
        ask_workers(done)

    endpoint = PrometheusEndpoint(
        address,
        supervisor.loop,
        WorkersCollector(figures),
        request_worker_metrics,
        deadline=deadline,
        health=lambda ready: health_answer(supervisor, ready),
    )
    endpoint.start()
    return endpoint
