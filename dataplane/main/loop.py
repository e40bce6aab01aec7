"""Main's event loop: one selector, one timer heap, callbacks. No threads, no asyncio.

Everything main does (accepting CLI clients, reading worker channels, signals through the
wakeup fd, gather deadlines, respawn delays) is a callback run from `run()`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pysozu.main.loop")

Callback = Callable[[int], None]  # receives the ready event mask


class Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._stopping = False

    def add(self, fileobj: Any, events: int, callback: Callback) -> None:
        self._selector.register(fileobj, events, callback)

    def modify(self, fileobj: Any, events: int, callback: Callback) -> None:
        self._selector.modify(fileobj, events, callback)

    def remove(self, fileobj: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fileobj)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        return timer

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        while not self._stopping:
            self._run_once()

    def _run_once(self) -> None:
        timeout = None
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            timeout = max(0.0, self._timers[0][0] - time.monotonic())
        for key, mask in self._selector.select(timeout):
            self._guarded(key.data, mask)
            if self._stopping:
                return
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _when, _seq, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(timer.callback)

    @staticmethod
    def _guarded(callback: Callable[..., None], *args: int) -> None:
        """A bug in one callback is logged; it never takes main (and its workers) down."""
        try:
            callback(*args)
        except Exception:
            log.exception("internal error in main's event loop (main keeps running)")

    def close(self) -> None:
        self._selector.close()
