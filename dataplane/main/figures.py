"""Counters main keeps about its own life, carried over a main upgrade.

`status` shows them in its message; the Prometheus endpoint can read them (`worker_restarts`
is the pool's `restarts`). `MainFigures` lives here rather than beside the Prometheus
collector so that a main with no `[prometheus]` address never imports `prometheus_client`
(about 12 MB of memory).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import dataplane


@dataclass
class LifecycleFigures:
    request_counts: Counter[str] = field(default_factory=Counter)
    worker_upgrades: int = 0
    main_upgrades: int = 0
    started_at: float = field(default_factory=time.time)

    @staticmethod
    def describe_main(worker_restarts: int, main_upgrades: int) -> str:
        return (
            f"main: pid {os.getpid()}, version {dataplane.__version__}, "
            f"worker restarts {worker_restarts}, main upgrades {main_upgrades}"
        )


@dataclass
class MainFigures:
    """Counters main keeps about itself; `workers_alive` is read at collect time."""

    workers_alive: Callable[[], int] = lambda: 0
    worker_restarts: int = 0
    worker_upgrades: int = 0
    main_upgrades: int = 0
    config_requests: dict[tuple[str, str], int] = field(default_factory=dict)
    scrape_timeouts: dict[str, int] = field(default_factory=dict)
    scrape_deadlines_missed: int = 0

    def config_request(self, verb: str, ok: bool) -> None:
        key = (verb, "ok" if ok else "failure")
        self.config_requests[key] = self.config_requests.get(key, 0) + 1
