"""What the runs measured, and the median that is quoted."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from harness.loadgen import LoadResult


@dataclass(frozen=True)
class Measurement:
    """One load run against one target."""

    load: LoadResult
    proxy_cpu_s: float | None  # utime + stime of the proxy's processes during the run
    rss_bytes: int | None  # of the proxy's workers, right after the run
    proxy_system_s: float | None = None  # the kernel's part of proxy_cpu_s (stime)

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.proxy_cpu_s is None or self.load.requests == 0:
            return None
        return self.proxy_cpu_s * 1e6 / self.load.requests

    @property
    def system_us_per_request(self) -> float | None:
        """The part of cpu_us_per_request spent in the kernel (system calls, TCP)."""
        if self.proxy_system_s is None or self.load.requests == 0:
            return None
        return self.proxy_system_s * 1e6 / self.load.requests


@dataclass
class Outcome:
    """All runs of one target in one scenario, or why it did not run."""

    target: str
    runs: list[Measurement] = field(default_factory=list)
    skipped: str | None = None
    note: str = ""

    def median(self) -> Measurement | None:
        """The run with the median requests/s (the lower middle for an even count), so that every
        quoted figure comes from one and the same run."""
        if not self.runs:
            return None
        ordered = sorted(self.runs, key=lambda m: m.load.requests_per_s)
        return ordered[(len(ordered) - 1) // 2]


@dataclass
class LatencySample:
    """Seconds from issuing a change to the first request it routes, one per change."""

    seconds: list[float] = field(default_factory=list)
    failures: int = 0
    first_error: str = ""

    def quantile(self, q: float) -> float | None:
        if not self.seconds:
            return None
        if len(self.seconds) == 1:
            return self.seconds[0]
        # "inclusive" keeps quantiles inside the observed range for small samples.
        cuts = statistics.quantiles(self.seconds, n=100, method="inclusive")
        return cuts[round(q * 100) - 1]


MEMORY_AFTER_S = 5.0  # when the "after" figure of a memory sample is read
MEMORY_HELD_S = 3.0  # how long connections are held before the "held" figure is read


@dataclass(frozen=True)
class MemorySample:
    connections: int
    before: int
    held: int
    after: int  # MEMORY_AFTER_S seconds after the connections closed


@dataclass
class ScenarioResult:
    name: str
    title: str
    outcomes: list[Outcome]
    commands: list[str] = field(default_factory=list)
    reconfiguration: dict[str, LatencySample] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Per target: serving processes' RSS in bytes before, while and after idle connections
    # are held (scenarios with idle_requests).
    memory: dict[str, MemorySample] = field(default_factory=dict)
