"""Open connections per (client IP, cluster id): what `max_connections_per_ip` limits.

One table per worker (`HttpProxy.peers`), which every HTTP listener also holds (`peers`), so a
compiled session counts a connection and gives it back with native calls: `clusters.py`,
where the table used to live, is interpreted, and its two method calls cost a `Connection:
close` request some 3,000 instructions (issue 22).
"""

from __future__ import annotations


class PeerCounts:
    """How many connections each (client IP, cluster id) holds; absent keys hold none."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, key: tuple[str, str]) -> int:
        return self._counts.get(key, 0)

    def acquire(self, key: tuple[str, str]) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def release(self, key: tuple[str, str]) -> None:
        counts = self._counts
        count = counts.get(key, 0) - 1
        if count > 0:
            counts[key] = count
        else:
            counts.pop(key, None)
