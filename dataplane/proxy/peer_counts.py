"""Open connections per (client IP, cluster id): what `max_connections_per_ip` limits.

One table per worker (`HttpProxy.peers`), which every HTTP listener also holds (`peers`), so a
compiled session counts a connection and gives it back with native calls: `clusters.py`,
where the table used to live, is interpreted, and its two method calls cost a `Connection:
close` request some 3,000 instructions (issue 22). Counts are kept per IP, then per cluster
id, both strings: their hashes are cached in the objects, where a (ip, cluster) tuple key was
boxed and hashed anew at every lookup.

A count that falls to zero stays in the table: the address's next connection finds its entry
(a client that connects, is answered and closes, again and again, no longer makes and frees a
dict per connection: ~500 instructions). The worker's tick prunes the zeros once the table
holds PRUNE_FLOOR addresses or twice as many as the last prune kept, so it stays bounded.
"""

from __future__ import annotations

from typing import Final

PRUNE_FLOOR: Final = 1024  # addresses kept before zeros are pruned (~250 KB at most)


class PeerCounts:
    """How many connections each (client IP, cluster id) holds; absent keys hold none."""

    __slots__ = ("_by_ip", "_prune_at")

    def __init__(self) -> None:
        self._by_ip: dict[str, dict[str, int]] = {}
        self._prune_at = PRUNE_FLOOR

    def __len__(self) -> int:
        """The (IP, cluster id) pairs holding connections."""
        return sum(1 for clusters in self._by_ip.values() for count in clusters.values() if count)

    def addresses(self) -> int:
        """The addresses in the table, zeros not yet pruned included."""
        return len(self._by_ip)

    def prune(self, force: bool = False) -> None:
        """Drop the zero counts (the worker's tick), when the table has grown enough."""
        if not force and len(self._by_ip) < self._prune_at:
            return
        kept: dict[str, dict[str, int]] = {}
        for ip, clusters in self._by_ip.items():
            live = {cluster_id: count for cluster_id, count in clusters.items() if count}
            if live:
                kept[ip] = live
        self._by_ip = kept
        self._prune_at = max(PRUNE_FLOOR, 2 * len(kept))

    def count(self, ip: str, cluster_id: str) -> int:
        clusters = self._by_ip.get(ip)
        return 0 if clusters is None else clusters.get(cluster_id, 0)

    def acquire(self, ip: str, cluster_id: str) -> None:
        clusters = self._by_ip.get(ip)
        if clusters is None:
            self._by_ip[ip] = {cluster_id: 1}
        else:
            clusters[cluster_id] = clusters.get(cluster_id, 0) + 1

    def release(self, ip: str, cluster_id: str) -> None:
        clusters = self._by_ip.get(ip)
        if clusters is None:
            return
        count = clusters.get(cluster_id, 0) - 1
        if count >= 0:  # (-1: it held none, nothing to forget; a zero stays until a prune)
            clusters[cluster_id] = count
