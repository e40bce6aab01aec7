"""`set_metric_detail`: clients lease a finer metrics detail for a while, as in sozu 2.1.

A lease is (client_id, detail, expiry). The workers count at the effective level: the largest of
the configured one (`[metrics] detail`, default `cluster`) and every live lease's. A client
renews its lease by sending it again before it ends, and gives it up with `clear`. sozu's bounds
apply: a client_id of 1 to 64 bytes, a TTL of at most 300 s (60 s when not given), at most 64
leases at once. Leases live in main only; main sends the workers the effective level whenever it
changes (and on each renewal, so a worker restarted meanwhile catches up within a TTL).
"""

from __future__ import annotations

from dataplane.command.messages import MetricDetail, SetMetricDetail

MAX_LEASES = 64
MAX_TTL = 300
DEFAULT_TTL = 60
MAX_CLIENT_ID = 64


class LeaseError(ValueError):
    """A request sozu would refuse: the reason is the FAILURE's message."""


class MetricLeases:
    def __init__(self, configured: MetricDetail) -> None:
        self.configured = configured
        self._leases: dict[str, tuple[MetricDetail, float]] = {}  # client -> (detail, end)

    def __len__(self) -> int:
        return len(self._leases)

    @property
    def effective(self) -> MetricDetail:
        leased = [detail for detail, _ in self._leases.values()]
        return MetricDetail(max([self.configured, *leased]))

    def apply(self, request: SetMetricDetail, now: float) -> float | None:
        """Take, renew or give up a lease; returns when it ends (None when cleared)."""
        client = request.client_id
        if not client or len(client.encode()) > MAX_CLIENT_ID:
            raise LeaseError(f"client_id must be 1 to {MAX_CLIENT_ID} bytes")
        if request.clear:
            self._leases.pop(client, None)
            return None
        if request.detail is None:
            raise LeaseError("a lease needs a detail (or clear)")
        ttl = DEFAULT_TTL if request.ttl_seconds is None else request.ttl_seconds
        if not 0 < ttl <= MAX_TTL:
            raise LeaseError(f"ttl_seconds must be 1 to {MAX_TTL}")
        if client not in self._leases and len(self._leases) >= MAX_LEASES:
            raise LeaseError(f"too many metric detail leases ({MAX_LEASES})")
        end = now + ttl
        self._leases[client] = (request.detail, end)
        return end

    def expire(self, now: float) -> list[str]:
        """Drop the leases that ended; the clients whose lease it was."""
        ended = [client for client, (_, end) in self._leases.items() if end <= now]
        for client in ended:
            del self._leases[client]
        return ended
