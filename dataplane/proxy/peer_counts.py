"""Open connections per (client IP, cluster id): what `max_connections_per_ip` limits.

One table per worker (`HttpProxy.peers`), which every HTTP listener also holds (`peers`), so a
compiled session counts a connection and gives it back with native calls: `clusters.py`,
where the table used to live, is interpreted, and its two method calls cost a `Connection:
close` request some 3,000 instructions (issue 22). Counts are kept per IP, then per cluster
id, both strings: their hashes are cached in the objects, where a (ip, cluster) tuple key was
boxed and hashed anew at every lookup.
"""

from __future__ import annotations


class PeerCounts:
    """How many connections each (client IP, cluster id) holds; absent keys hold none."""

    __slots__ = ("_by_ip",)

    def __init__(self) -> None:
        self._by_ip: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        """The (IP, cluster id) pairs holding connections."""
        return sum(len(clusters) for clusters in self._by_ip.values())

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
        if count > 0:
            clusters[cluster_id] = count
        elif count == 0:  # its last connection (-1: it held none, nothing to forget)
            if len(clusters) > 1:
                del clusters[cluster_id]
            else:
                del self._by_ip[ip]
