"""One timer structure for every timeout in a worker: a wheel of one-second slots.

A timed object (a session, an idle pooled connection) carries its own `deadline` and is filed
in at most one slot. Pushing a deadline later costs nothing: the object is simply re-filed when
its slot comes up (lazy rescheduling). Only a deadline moving *earlier* than its slot moves it,
so a keep-alive connection serving requests back to back touches the wheel about once per
timeout period, never per request, and no timer object is ever allocated.
"""

from __future__ import annotations

import math
from typing import Final, Protocol


class Timed(Protocol):
    deadline: float
    timer_slot: float

    def on_timeout(self, now: float) -> None: ...


# Above every slot, so `deadline >= entry.timer_slot` ("no need to touch the wheel") is
# false for an entry that is not filed.
NOT_FILED: Final = float("inf")


class TimerWheel:
    def __init__(self, now: float) -> None:
        self._slots: dict[float, set[Timed]] = {}
        self._next_slot = math.floor(now)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._slots.values())

    def arm(self, entry: Timed, deadline: float) -> None:
        """Set `entry`'s deadline; it will get `on_timeout` soon after it passes."""
        entry.deadline = deadline
        if deadline >= entry.timer_slot:
            return  # filed no later than needed (the check below, without math.ceil's call)
        slot = math.ceil(deadline)
        if slot < self._next_slot:  # not max(): a builtin call costs twice this, per arm
            slot = self._next_slot
        current = entry.timer_slot
        if current <= slot:
            return  # filed no later than needed: re-filed lazily when its slot fires
        if current != NOT_FILED:
            self._slots[current].discard(entry)
        entry.timer_slot = slot
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = {entry}
        else:
            bucket.add(entry)

    def cancel(self, entry: Timed) -> None:
        if entry.timer_slot != NOT_FILED:
            bucket = self._slots.get(entry.timer_slot)
            if bucket is not None:
                bucket.discard(entry)
            entry.timer_slot = NOT_FILED

    def expire(self, now: float) -> None:
        """Fire every entry whose deadline has passed; re-file those pushed later."""
        last = math.floor(now)
        while self._next_slot <= last:
            slot = self._next_slot
            bucket = self._slots.pop(slot, None)
            self._next_slot += 1
            if not bucket:
                continue
            for entry in bucket:
                if entry.timer_slot != slot:
                    continue  # cancelled while this slot was being fired
                entry.timer_slot = NOT_FILED
                if entry.deadline <= now:
                    entry.on_timeout(now)
                else:
                    self.arm(entry, entry.deadline)

    def next_expiry(self, now: float) -> float:
        """Seconds until the next slot worth waking up for (bounded to one second)."""
        return max(0.0, min(1.0, self._next_slot - now))
