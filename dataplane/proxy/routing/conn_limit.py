"""Requests in flight per client address: a frontend's `connection_limit` (nginx's `limit_conn`).

A pysozu extension (docs/access-control.md), made for ingress-nginx's `limit-connections`,
which generates `limit_conn` keyed on `$binary_remote_addr` in a zone per Ingress. nginx counts
a connection while it has a request being processed; pysozu counts each request (an HTTP/2
stream alike) from routing to the end of its response, whatever ends it: the response's last
byte, an answer of the proxy, a backend failure, a timeout, a reset or a closed connection.
The session or stream that holds a count gives it back exactly once (`release`).

Limits naming one `zone` (with the same maximum, status and exempt sources) share their counts
across frontends: an Ingress's routes count a client once. Each worker counts its own
connections. Memory is bounded by the requests in flight: an address whose count returns to
zero is forgotten.
"""

from __future__ import annotations

from dataplane.command.messages import ConnectionLimit
from dataplane.proxy.networks import Networks
from dataplane.proxy.routing.zones import shared

TOO_MANY = "too many requests in flight from this address"


class ConnLimiter:
    """The counts of one `ConnectionLimit` (one frontend's, or one zone's)."""

    __slots__ = ("__weakref__", "counts", "exempt", "most", "status")

    def __init__(self, limit: ConnectionLimit) -> None:
        self.most = limit.max_concurrent_per_client
        self.status = limit.status
        self.exempt = Networks(limit.exempt_sources) if limit.exempt_sources else None
        self.counts: dict[str, int] = {}  # address -> requests in flight (never 0)

    def acquire(self, ip: str) -> int:
        """1 if a count was taken for `ip` (release it later), 0 for an exempt address (nothing
        to release), -1 when `ip` is at the limit (answer `status`)."""
        counts = self.counts
        held = counts.get(ip, 0)
        if held == 0:
            if self.exempt is not None and ip in self.exempt:
                return 0
        elif held >= self.most:
            return -1
        counts[ip] = held + 1
        return 1

    def release(self, ip: str) -> None:
        counts = self.counts
        held = counts.get(ip, 0)
        if held > 1:
            counts[ip] = held - 1
        elif held:
            del counts[ip]


def conn_limiter_for(limit: ConnectionLimit | None) -> ConnLimiter | None:
    """The frontend's own limiter, or its zone's (shared with the other frontends naming it)."""
    if limit is None:
        return None
    if limit.zone is None:
        return ConnLimiter(limit)
    key = ("connections", limit.zone, limit.max_concurrent_per_client, limit.status)
    return shared((*key, *limit.exempt_sources), lambda: ConnLimiter(limit))
