"""One backend server: live load counters, connect-time EWMA and circuit breaker (sozu 6.2).

The circuit breaker: a failed connect makes the backend wait a random 1..2^n - 1 seconds
(n = failures so far; failures reported while it already waits are ignored, since they are
the same outage), after 6 failures it is *down* (it no longer counts as available for the
cluster), and a successful connect resets it. A down backend is still tried once its wait
elapses: that is how it comes back without an active health check.

State changes that alter which backends are candidates call back into the owning set, so the
set rebuilds its candidate lists only when something actually changed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Final

from dataplane.command.address import SocketAddress
from dataplane.proxy.balancing.hashing import hash_bytes

DEFAULT_WEIGHT: Final = 100
MAX_CONNECT_TRIES: Final = 6
# Peak-EWMA connect time (seconds), after Finagle via sozu: a new backend starts at 50 ms so it
# does not take all the traffic at once; the estimate decays towards new samples over ~1 s.
_EWMA_INITIAL = 0.050
_EWMA_DECAY = 1.0


class Backend:
    """One backend server of a cluster, with its live counters and circuit breaker."""

    __slots__ = (
        "_on_change",
        "_rng",
        "_rtt",
        "_rtt_at",
        "_tries",
        "active_connections",
        "active_requests",
        "address",
        "backend_id",
        "backup",
        "failures",
        "healthy",
        "removed",
        "retry_at",
        "salt",
        "sticky_id",
        "weight",
    )

    def __init__(
        self,
        backend_id: str,
        address: SocketAddress,
        sticky_id: str | None = None,
        weight: int = DEFAULT_WEIGHT,
        backup: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.backend_id = backend_id
        self.address = address
        self.sticky_id = sticky_id
        self.weight = weight
        self.backup = backup
        self.active_connections = 0
        self.active_requests = 0
        self.failures = 0  # total failed connects, for metrics
        self.healthy = True  # the active health check's verdict
        self.removed = False  # taken out of its cluster; its last connections may still run
        self.retry_at = 0.0  # no connect attempt before this time
        self.salt = hash_bytes(str(address).encode())
        self._tries = 0
        self._rtt = _EWMA_INITIAL
        self._rtt_at: float | None = None
        self._rng = rng or random.Random()
        self._on_change: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"Backend({self.backend_id!r}, {self.address})"

    @property
    def is_down(self) -> bool:
        return self._tries >= MAX_CONNECT_TRIES

    @property
    def is_available(self) -> bool:
        """Counts towards the cluster's availability (sozu's `is_available`)."""
        return self.healthy and not self.is_down

    def can_open(self, now: float) -> bool:
        return self.healthy and now >= self.retry_at

    def set_healthy(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self._changed()

    def connect_failed(self, now: float) -> bool:
        """Count a failed connect; True when this failure opened the circuit (now down)."""
        self.failures += 1
        if now < self.retry_at:
            return False  # connects started before the first failure: one outage, one step
        was_down = self.is_down
        ceiling = 1 << self._tries
        self.retry_at = now + (1 if ceiling <= 2 else self._rng.randint(1, ceiling - 1))
        self._tries = min(self._tries + 1, MAX_CONNECT_TRIES)
        self._changed()
        return self.is_down and not was_down

    def connect_succeeded(self, duration: float, now: float | None = None) -> bool:
        """A connection is open: count it, reset the breaker, feed the connect-time EWMA.
        True when the circuit was open (the backend was down and is up again)."""
        self.active_connections += 1
        self._observe_rtt(duration, time.monotonic() if now is None else now)
        was_down = self.is_down
        if self._tries or self.retry_at:
            self._tries = 0
            self.retry_at = 0.0
            self._changed()
        return was_down

    def connection_closed(self) -> None:
        self.active_connections = max(0, self.active_connections - 1)

    def request_started(self) -> None:
        self.active_requests += 1

    def request_finished(self) -> None:
        self.active_requests = max(0, self.active_requests - 1)

    def connection_cost(self, now: float) -> float:
        """Peak-EWMA connect time, decayed to `now`, times (active connections + 1)."""
        self._observe_rtt(0.0, now)
        return (self.active_connections + 1) * self._rtt

    def _observe_rtt(self, sample: float, now: float) -> None:
        elapsed = 0.0 if self._rtt_at is None else max(0.0, now - self._rtt_at)
        if sample > self._rtt:
            self._rtt = sample  # latency rising: react at once
        else:
            keep = math.exp(-elapsed / _EWMA_DECAY)
            self._rtt = self._rtt * keep + sample * (1.0 - keep)
        self._rtt_at = now

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
