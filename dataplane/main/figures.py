"""Counters main keeps about its own life, carried over a main upgrade.

`status` shows them in its message; the Prometheus endpoint can read them (`worker_restarts`
is the pool's `restarts`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
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
