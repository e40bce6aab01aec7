"""Who may use a route, and how much: a frontend's source lists, rate limits and body size.

pysozu extensions to sozu (docs/access-control.md), made for ingress-nginx's
`whitelist-source-range`, `denylist-source-range`, `limit-rps`/`limit-rpm` (with
`limit-burst-multiplier` and `limit-whitelist`), `proxy-body-size` and `limit-connections`
(routing/conn_limit.py). `Access.build` makes one
per frontend when it sets any of them, None otherwise: a route without access rules pays one
attribute test.

The client is the connection's peer (the PROXY header's source on `expect_proxy` listeners);
behind a trusted proxy (the listener's `trusted_proxies`), the right-most X-Forwarded-For
address that is not itself a trusted proxy, as nginx's `real_ip_recursive` finds it. An
address that cannot be read matches no network: it is refused by an allow list and by a deny
list alike (fail closed), and rate-limited as one client.

Rate limits are nginx's `limit_req ... burst=B nodelay` (limits naming one `zone` share their
counts: an Ingress's routes count a client once, as ingress-nginx's per-Ingress zone): each
client address has an excess that drains at `rate` per second; a request adds one, and is
refused when the excess would pass `burst`. Each worker counts the connections it serves (the
limit is per worker, as it is per ingress-nginx replica), in a table bounded by MAX_CLIENTS per
limit.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket

from dataplane.command.messages import RateLimit, RequestHttpFrontend
from dataplane.proxy.networks import Networks
from dataplane.proxy.routing.conn_limit import conn_limiter_for
from dataplane.proxy.routing.zones import shared

MAX_CLIENTS = 65_536  # client addresses one rate limit remembers
FORBIDDEN = 403


def too_large(limit: int) -> str:
    """The 413 answer's message."""
    return f"the limit is {limit} bytes"


def _readable(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except OSError:
        return False
    return True


def client_address(peer_ip: str, forwarded_for: bytes | None, trusted: Networks | None) -> str:
    """The address access rules apply to (see the module docstring)."""
    if trusted is None or not forwarded_for or peer_ip not in trusted:
        return peer_ip
    hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if hop not in trusted:
            return _unwrapped(hop)
    return _unwrapped(hops[0])


def _unwrapped(text: str) -> str:
    if ":" not in text or not _readable(text):
        return text
    address = ipaddress.IPv6Address(text.partition("%")[0])
    return str(address.ipv4_mapped or address)


class RateLimiter:
    """One `RateLimit` of a frontend, with the excess of each client address it saw."""

    __slots__ = ("__weakref__", "_clients", "burst", "exempt", "rate", "status")

    def __init__(self, limit: RateLimit) -> None:
        self.rate = limit.rate
        self.burst = float(limit.burst)
        self.status = limit.status
        self.exempt = Networks(limit.exempt_sources) if limit.exempt_sources else None
        self._clients: dict[str, tuple[float, float]] = {}  # address -> (excess, when)

    def __len__(self) -> int:
        return len(self._clients)

    def admit(self, ip: str, now: float) -> bool:
        clients = self._clients
        entry = clients.get(ip)
        if entry is None:
            if self.exempt is not None and ip in self.exempt:
                return True
            if len(clients) >= MAX_CLIENTS:
                self._make_room(now)
            clients[ip] = (0.0, now)
            return True
        excess, then = entry
        excess += 1.0 - self.rate * (now - then)
        if excess < 0.0:
            excess = 0.0
        if excess > self.burst:
            return False  # refused requests change nothing, as in nginx
        clients[ip] = (excess, now)
        return True

    def _make_room(self, now: float) -> None:
        """Forget the clients whose excess has drained; if that frees less than an eighth
        of the table, the oldest entries too (an eighth at a time: amortised O(1))."""
        clients = self._clients
        rate = self.rate
        drained = [ip for ip, (excess, then) in clients.items() if excess <= rate * (now - then)]
        for ip in drained:
            del clients[ip]
        missing = MAX_CLIENTS // 8 - len(drained)
        if missing > 0:
            for ip in list(itertools.islice(clients, missing)):
                del clients[ip]


def limiter_for(limit: RateLimit) -> RateLimiter:
    """The frontend's own limiter, or its zone's, shared with the other frontends naming it."""
    if limit.zone is None:
        return RateLimiter(limit)
    key = ("rate", limit.zone, limit.rate, limit.burst, limit.status, *limit.exempt_sources)
    return shared(key, lambda: RateLimiter(limit))


class Access:
    """A frontend's access rules, compiled once (`build`)."""

    __slots__ = ("allowed", "connections", "denied", "limiters", "max_body_size")

    def __init__(self, front: RequestHttpFrontend) -> None:
        self.allowed = Networks(front.allowed_sources) if front.allowed_sources else None
        self.denied = Networks(front.denied_sources) if front.denied_sources else None
        self.limiters = tuple(limiter_for(limit) for limit in front.rate_limits)
        self.max_body_size = front.max_body_size or None  # 0: no limit, as nginx says
        self.connections = conn_limiter_for(front.connection_limit)  # (routing/conn_limit.py)

    @classmethod
    def build(cls, front: RequestHttpFrontend) -> Access | None:
        if (
            front.allowed_sources
            or front.denied_sources
            or front.rate_limits
            or front.max_body_size
            or front.connection_limit
        ):
            return cls(front)
        return None

    def refusal(self, ip: str, now: float) -> int:
        """0 if this client may make this request now, else the status to answer."""
        allowed = self.allowed
        if allowed is not None and ip not in allowed:
            return FORBIDDEN
        denied = self.denied
        if denied is not None and (ip in denied or not _readable(ip)):
            return FORBIDDEN
        for limiter in self.limiters:
            if not limiter.admit(ip, now):
                return limiter.status
        return 0
