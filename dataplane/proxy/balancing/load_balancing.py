"""Backends of one cluster and how a request picks one, as sozu 2.1 does it.

Candidates, in order: non-backup backends that can open a connection; else backup backends;
else *fail-open*: every backend whose connect backoff has elapsed, health checks ignored (the
set counts these selections and raises a warning once per outage). A request carrying a sticky
id first gets the backend with that id if it can open. (`Backend` and its circuit breaker:
`balancing/backend.py`.)

Algorithms: ROUND_ROBIN, RANDOM (weighted), LEAST_LOADED and POWER_OF_TWO (by the load metric:
active connections, active requests, or peak-EWMA connect time), HRW and MAGLEV (consistent
hashing on the request key; round robin when there is no key).

Candidate lists are rebuilt only when something changes: a backend added or removed, a health
verdict or backoff flips, or a backoff expires (the set tracks the earliest expiry). Round
robin is then an index increment, and consistent-hashing winners are remembered per key
(bounded) until the next rebuild.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator

from dataplane.command.address import SocketAddress
from dataplane.command.messages import AddBackend, LoadBalancingAlgorithms, LoadMetric
from dataplane.proxy.balancing.backend import DEFAULT_WEIGHT, MAX_CONNECT_TRIES, Backend
from dataplane.proxy.balancing.hashing import (
    build_maglev_table,
    hash_bytes,
    maglev_table_size,
    rendezvous_winner,
)

__all__ = ["DEFAULT_WEIGHT", "MAX_CONNECT_TRIES", "Backend", "BackendSet"]


def _metric_of(metric: LoadMetric, now: float) -> Callable[[Backend], float]:
    if metric is LoadMetric.REQUESTS:
        return lambda backend: backend.active_requests
    if metric is LoadMetric.CONNECTION_TIME:
        return lambda backend: backend.connection_cost(now)
    return lambda backend: backend.active_connections


class _Tier:
    """One candidate list with what the algorithms precompute on it."""

    __slots__ = ("backends", "cum_weights", "ids", "rendezvous", "winners")

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends
        self.ids = {id(backend) for backend in backends}
        self.rendezvous = [(b.salt, max(1, b.weight), b) for b in backends]
        self.winners: dict[bytes, Backend] = {}  # consistent-hash decisions, bounded
        total = 0
        self.cum_weights: list[int] = []
        for backend in backends:
            total += max(0, backend.weight)
            self.cum_weights.append(total)


_EMPTY = _Tier([])
_ROUND_ROBIN = LoadBalancingAlgorithms.ROUND_ROBIN
_WINNER_CACHE_SIZE = 4096
_HASHING = (LoadBalancingAlgorithms.HRW, LoadBalancingAlgorithms.MAGLEV)


class BackendSet:
    """The backends of one cluster and its load-balancing policy.

    `now` arguments are `time.monotonic()` seconds. `rng` makes random choices reproducible.
    """

    def __init__(
        self,
        algorithm: LoadBalancingAlgorithms = LoadBalancingAlgorithms.ROUND_ROBIN,
        metric: LoadMetric | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self._backends: list[Backend] = []
        self._cursor = 0
        self._stale = True
        self._wake_at = math.inf  # earliest backoff expiry: the candidates change then
        self._tiers: tuple[_Tier, _Tier, _Tier] = (_EMPTY, _EMPTY, _EMPTY)
        self._tier, self._tier_fail_open = _EMPTY, False  # the first non-empty tier
        self._maglev: list[int] | None = None  # built lazily, over all backends
        self._fail_open = False
        self._fail_open_warning = False
        self.fail_open_selections = 0
        self.configure(algorithm, metric)

    def __len__(self) -> int:
        return len(self._backends)

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends)

    def get(self, backend_id: str) -> Backend | None:
        return next((b for b in self._backends if b.backend_id == backend_id), None)

    def configure(self, algorithm: LoadBalancingAlgorithms, metric: LoadMetric | None) -> None:
        self.algorithm = LoadBalancingAlgorithms(algorithm)
        self.metric = LoadMetric(metric if metric is not None else LoadMetric.CONNECTIONS)
        self._invalidate()  # cached hashing decisions belong to the previous algorithm

    def add(self, request: AddBackend) -> Backend:
        """Add a backend; the same id and address again updates sticky id, weight and backup."""
        params = request.load_balancing_parameters
        weight = DEFAULT_WEIGHT if params is None else params.weight
        backend = next(
            (
                b
                for b in self._backends
                if b.backend_id == request.backend_id and b.address == request.address
            ),
            None,
        )
        if backend is None:
            backend = Backend(request.backend_id, request.address, rng=self._rng)
            backend._on_change = self._invalidate
            self._backends.append(backend)
        backend.sticky_id = request.sticky_id
        backend.weight = weight
        backend.backup = bool(request.backup)
        self._maglev = None
        self._invalidate()
        return backend

    def remove(self, backend_id: str, address: SocketAddress) -> bool:
        kept = [
            b for b in self._backends if not (b.backend_id == backend_id and b.address == address)
        ]
        if len(kept) == len(self._backends):
            return False
        for backend in self._backends:
            if backend not in kept:
                backend._on_change = None
        self._backends = kept
        self._maglev = None
        self._invalidate()
        return True

    def take_fail_open_warning(self) -> bool:
        """True once each time the cluster enters fail-open, for the caller to log."""
        warning, self._fail_open_warning = self._fail_open_warning, False
        return warning

    def select(
        self,
        now: float,
        key: bytes | None = None,
        sticky_id: str | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> Backend | None:
        """Pick a backend; `exclude` holds backend ids this request already failed to reach."""
        if sticky_id is not None:
            # The cookie names `sticky_id`, or the backend id of a backend without one (what
            # the cookie was set to; sozu sets it too but never finds it again).
            for backend in self._backends:
                if (backend.sticky_id or backend.backend_id) == sticky_id:
                    if backend.can_open(now) and backend.backend_id not in exclude:
                        return backend
                    break
        if self._stale or now >= self._wake_at:
            self._rebuild(now)
        if exclude:
            tier, fail_open = self._candidates(exclude)
        else:
            tier, fail_open = self._tier, self._tier_fail_open
        backends = tier.backends
        if not backends:
            return None
        if fail_open:
            self.fail_open_selections += 1
            if not self._fail_open:
                self._fail_open = self._fail_open_warning = True
        elif self._fail_open:
            self._fail_open = False
        algorithm = self.algorithm
        if algorithm is _ROUND_ROBIN:
            return self._round_robin(backends)
        if algorithm is LoadBalancingAlgorithms.RANDOM:
            total = tier.cum_weights[-1]
            if total <= 0:
                return self._rng.choice(backends)
            # Weighted draw: the first backend whose cumulative weight exceeds a uniform point.
            return backends[bisect_right(tier.cum_weights, self._rng.random() * total)]
        if algorithm in _HASHING:
            if key is None:
                return self._round_robin(backends)  # sozu's fallback without a key
            # Keys (client addresses) repeat: remember winners until the candidates change.
            winner = tier.winners.get(key)
            if winner is None:
                if algorithm is LoadBalancingAlgorithms.HRW:
                    winner = rendezvous_winner(hash_bytes(key), tier.rendezvous)
                else:
                    winner = self._maglev_pick(tier, hash_bytes(key))
                if len(tier.winners) >= _WINNER_CACHE_SIZE:
                    tier.winners.clear()
                tier.winners[key] = winner
            return winner
        load = _metric_of(self.metric, now)
        if algorithm is LoadBalancingAlgorithms.LEAST_LOADED or len(backends) == 1:
            return min(backends, key=load)
        # POWER_OF_TWO: one of the two least loaded, at random (as sozu).
        return sorted(backends, key=load)[self._rng.getrandbits(1)]

    def _round_robin(self, backends: list[Backend]) -> Backend:
        self._cursor = cursor = (self._cursor + 1) % len(backends)
        return backends[cursor - 1]

    def _candidates(self, exclude: frozenset[str]) -> tuple[_Tier, bool]:
        for index, tier in enumerate(self._tiers):
            tier = _Tier([b for b in tier.backends if b.backend_id not in exclude])
            if tier.backends:
                return tier, index == 2
        return _EMPTY, False

    def _maglev_pick(self, tier: _Tier, key_hash: int) -> Backend:
        if self._maglev is None:
            weights = [max(1, b.weight) for b in self._backends]
            salts = [b.salt for b in self._backends]
            self._maglev = build_maglev_table(salts, weights, maglev_table_size(len(salts)))
        table, size = self._maglev, len(self._maglev)
        start = key_hash % size
        # The table covers every backend; walk on from the key's slot to a current candidate.
        for step in range(size):
            backend = self._backends[table[(start + step) % size]]
            if id(backend) in tier.ids:
                return backend
        return tier.backends[0]  # a backend whose weight is tiny next to the others owns no slot

    def _invalidate(self) -> None:
        self._stale = True

    def _rebuild(self, now: float) -> None:
        primary: list[Backend] = []
        backup: list[Backend] = []
        ready: list[Backend] = []
        self._wake_at = math.inf
        for backend in self._backends:
            if now < backend.retry_at:
                self._wake_at = min(self._wake_at, backend.retry_at)
            else:
                ready.append(backend)
                if backend.healthy:
                    (backup if backend.backup else primary).append(backend)
        self._tiers = (_Tier(primary), _Tier(backup), _Tier(ready))
        index = next((i for i, tier in enumerate(self._tiers) if tier.backends), 0)
        self._tier, self._tier_fail_open = self._tiers[index], index == 2
        self._stale = False
