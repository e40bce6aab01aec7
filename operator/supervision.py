"""Long-running tasks that cannot die silently: restarted on any exception, watched by /healthz.

Each operator-level task (Lease, status, Events, reconciler, dataplane watch) runs under
`Supervisor.spawn`: an exception that escapes its loop is logged with its traceback and the
loop is started again after a back-off (0.5 s doubling, capped). A loop that returns is a bug
too, and is restarted the same way. The loops call `Heartbeat.beat()` at least once per
`stall_after` seconds, idle or not; `/healthz` reports a task that ended for good (or was never
restarted) as dead and one that has not beaten within its bound as stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pysozu.ingress.supervision")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class Backoff:
    """Exponential back-off: `first`, doubling, at most `limit`; `reset()` after a success."""

    def __init__(self, first: float = 0.5, limit: float = 30.0) -> None:
        self.first, self.limit, self.current = first, limit, 0.0

    def next(self) -> float:
        self.current = min(self.limit, self.current * 2 if self.current else self.first)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


@dataclass(slots=True)
class Heartbeat:
    """Progress of one task: the loop beats; the supervisor counts restarts."""

    name: str
    stall_after: float  # seconds without a beat after which the task is stuck
    clock: Clock = time.monotonic
    last: float = field(default=0.0)
    restarts: int = 0
    last_error: str = ""

    def __post_init__(self) -> None:
        self.last = self.clock()

    def beat(self) -> None:
        self.last = self.clock()

    def stalled(self) -> float | None:
        """Seconds since the last beat when beyond the bound, else None."""
        quiet = self.clock() - self.last
        return quiet if quiet > self.stall_after else None


Loop = Callable[[Heartbeat], Coroutine[Any, Any, None]]


class Supervisor:
    def __init__(
        self,
        sleep: Sleep = asyncio.sleep,
        backoff_limit: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._backoff_limit = backoff_limit
        self._clock = clock
        self.beats: dict[str, Heartbeat] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, name: str, loop: Loop, stall_after: float) -> Heartbeat:
        heartbeat = Heartbeat(name, stall_after, self._clock)
        self.beats[name] = heartbeat
        self.tasks[name] = asyncio.create_task(self.keep_running(loop, heartbeat), name=name)
        return heartbeat

    async def keep_running(self, loop: Loop, heartbeat: Heartbeat) -> None:
        """Run `loop` forever: every exit but cancellation is logged and followed by a restart."""
        backoff = Backoff(limit=self._backoff_limit)
        while True:
            started = self._clock()
            try:
                await loop(heartbeat)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                heartbeat.last_error = f"{type(error).__name__}: {error}"
                log.exception("task %s failed; restarting it", heartbeat.name)
            else:
                heartbeat.last_error = "returned"
                log.error("task %s returned; restarting it", heartbeat.name)
            if self._clock() - started > 60.0:  # it ran well for a while: start over gently
                backoff.reset()
            heartbeat.restarts += 1
            delay = backoff.next()
            await self._sleep(delay)
            heartbeat.beat()  # the back-off is not a stall

    def problems(self) -> list[str]:
        """What /healthz reports: dead tasks (ended, not restarted) and stuck ones."""
        found = []
        for name, heartbeat in self.beats.items():
            task = self.tasks.get(name)
            if task is not None and task.done():
                reason = "cancelled" if task.cancelled() else repr(task.exception())
                found.append(f"{name}: dead ({reason})")
            elif (quiet := heartbeat.stalled()) is not None:
                found.append(f"{name}: stuck (no progress for {quiet:.0f}s)")
        return found

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        self.beats.clear()
