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


class ProxyProtocolFigures:
    """The worker's PROXY protocol counters (`query_metrics`, Prometheus)."""

    __slots__ = ("empty", "errors", "headers", "local", "timeouts")

    def __init__(self) -> None:
        self.headers = 0  # complete headers, connections handed on
        self.local = 0  # of which carried no client address: the peer's own is used
        self.errors = 0  # missing, malformed, oversized, or cut short by the client
        self.timeouts = 0  # not complete within request_timeout
        self.empty = 0  # closed before sending a byte (a load balancer's TCP check)

    def snapshot(self) -> dict[str, int]:
        return {
            "proxy_protocol.headers": self.headers,
            "proxy_protocol.local": self.local,
            "proxy_protocol.errors": self.errors,
            "proxy_protocol.timeouts": self.timeouts,
            "proxy_protocol.empty": self.empty,
        }
