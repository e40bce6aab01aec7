"""Sweeping: objects deleted while a watch was down stop being routed.

When the API server ends a watch with 410 Gone (the resource version it resumes from is too
old: the watch was down or slow for minutes), kopf lists the resource again and watches from
there. The objects that exist come again as events (of type None); the ones deleted during the
gap never come at all, and no DELETED event will ever name them. `Indices` reports such a
re-listed resource to `Sweeper.relisted`; the sweeper lets the burst of events pass (`quiet`),
lists the resource itself (names and uids only), drops from the indices what the listing lacks
and no event touched since the listing started (`Indices.sweep`), and triggers the reconciler:
the routes of the deleted objects go with the next push.

A re-list of a collection that became empty brings no event at all, so every resource is
also swept each `period` (default 10 minutes; 0: only after re-lists).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from ingress_operator.indices import Indices
from ingress_operator.kube import KubeError
from ingress_operator.model import ObjectKey
from ingress_operator.supervision import Backoff, Heartbeat

log = logging.getLogger("pysozu.ingress.sweep")

Resource = tuple[str, ...]
ListKeys = Callable[[Resource], Awaitable[dict[str, ObjectKey]]]  # uid -> key, one resource
IDLE_BEAT = 10.0
QUIET = 1.0  # seconds without a re-listed event before the sweep lists
MAX_WAIT = 30.0  # ... but at most this long after the first one


class Sweeper:
    def __init__(
        self,
        indices: Indices,
        list_keys: ListKeys,
        swept: Callable[[], None],
        period: float = 600.0,
        quiet: float = QUIET,
    ) -> None:
        self.indices = indices
        self.list_keys = list_keys
        self.swept = swept
        self.period = period
        self.quiet = quiet
        self.sweeps = 0  # listings compared (for metrics and tests)
        self.removed = 0  # objects dropped by them
        self.relists: Counter[str] = Counter()  # watches kopf restarted with a listing, by plural
        self._due: set[Resource] = set()
        self._wake = asyncio.Event()
        indices.on_relist = self.relisted

    def relisted(self, resource: Resource) -> None:
        if resource not in self._due:
            self.relists[resource[-1]] += 1
            log.info("%s re-listed (a watch was restarted): sweeping them", resource[-1])
        self._due.add(resource)
        self._wake.set()

    async def sweep(self, resources: set[Resource], heartbeat: Heartbeat | None = None) -> int:
        """List each resource and drop what the listing lacks; the number of objects dropped."""
        removed = 0
        for resource in sorted(resources):
            mark = self.indices.mark()
            listed = await self.list_keys(resource)
            if heartbeat is not None:
                heartbeat.beat()
            gone = self.indices.sweep(resource, listed.values(), mark)
            self.sweeps += 1
            if gone:
                names = ", ".join(str(key) for key in gone[:5]) + (", ..." if len(gone) > 5 else "")
                log.warning(
                    "%d %s deleted while the watch was down: %s", len(gone), resource[-1], names
                )
                removed += len(gone)
        if removed:
            self.removed += removed
            self.swept()
        return removed

    async def run(self, heartbeat: Heartbeat) -> None:
        backoff = Backoff(first=1.0, limit=60.0)
        last_full = time.monotonic()
        idle = min(IDLE_BEAT, self.period or IDLE_BEAT)
        while True:
            heartbeat.beat()
            try:
                async with asyncio.timeout(idle):
                    await self._wake.wait()
            except TimeoutError:
                if not self.period or time.monotonic() - last_full < self.period:
                    continue
                self._due.update(self.indices.resources)
            await self._let_the_burst_pass()
            if not self.indices.settled:  # the startup listing is not over: nothing to compare
                continue
            if set(self.indices.resources) <= self._due:
                last_full = time.monotonic()
            due, self._due = self._due, set()
            try:
                await self.sweep(due, heartbeat)
            except KubeError as error:
                self._due |= due
                delay = backoff.next()
                log.warning("cannot list for the sweep (%s): again in %.0fs", error, delay)
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            backoff.reset()

    async def _let_the_burst_pass(self) -> None:
        deadline = time.monotonic() + MAX_WAIT
        while (remaining := deadline - time.monotonic()) > 0:
            self._wake.clear()
            try:
                async with asyncio.timeout(min(self.quiet, remaining)):
                    await self._wake.wait()
            except TimeoutError:
                return
