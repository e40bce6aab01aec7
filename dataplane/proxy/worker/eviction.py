"""`evict_on_queue_full`: make room for a waiting connection by closing idle keep-alive ones.

At `max_connections` a worker stops accepting, and new connections wait in the kernel's listen
backlog until it falls below 90% (worker/loop.py). With `evict_on_queue_full = true`, as in sozu, it
first closes the longest-idle 1% (at least one) of its client connections that sit between two
requests (nothing read of the next one, nothing left to send), so that the waiting connection
is accepted at once; only when none is idle does it stop accepting.

An eviction happens only when a connection is known to wait: when the worker becomes full it
keeps its listeners in epoll ("armed"), and only a wake-up with no accept in between (the
listener is readable: someone knocks) evicts. Nothing of this runs on the accept path while
the worker has room, nor at all when the setting is off.
"""

from __future__ import annotations

import heapq
from operator import attrgetter
from typing import TYPE_CHECKING

from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import HEAD

if TYPE_CHECKING:
    from dataplane.proxy.worker.loop import Loop

EVICTED_SHARE = 100  # 1 in 100 of the worker's connections, as sozu
_deadline = attrgetter("deadline")


class Eviction:
    """Per worker: when it became full (by its accept count), and how many it evicted."""

    __slots__ = ("armed_at", "evicted")

    def __init__(self) -> None:
        self.armed_at = -1
        self.evicted = 0

    def make_room(self, loop: Loop) -> bool:
        """The worker is full. True: keep accepting (armed, or room was made); False: nothing
        is idle, stop accepting."""
        accepted = loop.counters.accepted
        if self.armed_at != accepted:  # it just filled up: wait for a connection to knock
            self.armed_at = accepted
            return True
        idle = [
            session
            for session in loop.sessions
            if isinstance(session, HttpSession)
            and session.phase == HEAD
            and not session.head_started
            and session.to_front is None
        ]
        if not idle:
            return False
        count = max(1, len(loop.sessions) // EVICTED_SHARE)
        for session in heapq.nsmallest(count, idle, key=_deadline):  # idle the longest
            session.close()
            self.evicted += 1
        return True
