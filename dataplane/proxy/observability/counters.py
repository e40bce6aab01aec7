"""Connection-level counters of a worker: plain integers bumped where things happen.

Per-request figures (requests, statuses, bytes, timings) live in `metrics.MetricsRegistry`;
these are the ones that belong to connections rather than requests. Both are read only when
main asks (`query_metrics`): no locks, no files, no system call on the hot path.
"""

from __future__ import annotations


class Counters:
    __slots__ = (
        "accepted",
        "backend_connections",
        "body_timeouts",
        "early_rejects",
        "timeouts",
        "upgrades",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.backend_connections = 0
        self.timeouts = 0
        self.body_timeouts = 0  # request bodies cut for arriving too slowly (also in timeouts)
        self.early_rejects = 0  # request heads refused before they were complete
        self.upgrades = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "client.connections.accepted": self.accepted,
            "backend.connections": self.backend_connections,
            "http.timeouts": self.timeouts,
            "http.request_body_timeouts": self.body_timeouts,
            "http.early_rejects": self.early_rejects,
            "http.upgrades": self.upgrades,
        }
