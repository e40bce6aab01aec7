"""Problems -> Kubernetes Events on the Ingress they concern, each said once (not every render).

A Warning is posted when first seen and again only after `repeat_after` seconds while it
persists. A Normal Event (information: an nginx internal that means nothing here) is posted
once while it persists, and again only if it went away and came back (the Ingress changed):
not once per reconcile, nor every hour.

Posting runs in the background through a bounded queue: a slow API server never slows
reconciling, and a flood of problems is dropped (and logged) rather than kept in memory.
A post that fails for a reason that may pass (no answer, 5xx, 429) is retried with back-off
(capped) while later Events wait in the queue; one the API server refuses (other 4xx) is logged
and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from ingress_operator.kube import KubeApi, KubeError
from ingress_operator.model import ObjectKey
from ingress_operator.render import Problem
from ingress_operator.supervision import Backoff, Heartbeat, Sleep

log = logging.getLogger("pysozu.ingress.events")

_QUEUE_SIZE = 1000
_MEMORY = 10_000
IDLE_BEAT = 10.0  # an idle poster still beats this often
STALL_AFTER = 120.0  # /healthz: the poster is stuck after this long without a beat


def retryable(error: KubeError) -> bool:
    """No answer, a server error or throttling may pass; another 4xx will not."""
    return error.status is None or error.status >= 500 or error.status == 429


class EventRecorder:
    def __init__(
        self,
        api: KubeApi | None,
        component: str,
        repeat_after: float = 3600.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.api = api
        self._sleep = sleep
        self.component = component
        self.repeat_after = repeat_after
        self._posted: OrderedDict[Problem, float] = OrderedDict()
        self._queue: asyncio.Queue[tuple[Problem, str]] = asyncio.Queue(_QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.posted = 0  # Events posted (for metrics)
        self._normal: set[Problem] = set()  # the Normal problems of the last `record`

    def start(self) -> None:
        """Post in an unsupervised task (tests); the controller supervises `post_forever`."""
        self._task = asyncio.create_task(self.post_forever(), name="pysozu-ingress-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def record(self, problems: Iterable[Problem], uids: Mapping[ObjectKey, str]) -> None:
        """Every render's problems (all of them: a Normal one missing has gone away)."""
        clock = time.monotonic()
        problems = list(problems)
        normal = {problem for problem in problems if problem.type == "Normal"}
        for gone in self._normal - normal:
            self._posted.pop(gone, None)
        self._normal = normal
        for problem in problems:
            last = self._posted.get(problem)
            if last is not None and (problem.type == "Normal" or clock - last < self.repeat_after):
                continue
            self._posted[problem] = clock
            self._posted.move_to_end(problem)
            while len(self._posted) > _MEMORY:
                self._posted.popitem(last=False)
            level = logging.WARNING if problem.type == "Warning" else logging.INFO
            log.log(level, "%s %s: %s", problem.ingress, problem.reason, problem.message)
            try:
                self._queue.put_nowait((problem, uids.get(problem.ingress, "")))
            except asyncio.QueueFull:
                log.error("too many events queued; dropped %s %s", problem.ingress, problem.reason)

    def forget(self, problem: Problem) -> None:
        """Allow a problem to be posted again at once (it was solved, then came back)."""
        self._posted.pop(problem, None)

    async def post_forever(self, heartbeat: Heartbeat | None = None) -> None:
        beat = heartbeat or Heartbeat("events", STALL_AFTER)
        backoff = Backoff()
        while True:
            beat.beat()
            try:
                async with asyncio.timeout(IDLE_BEAT):
                    problem, uid = await self._queue.get()
            except TimeoutError:
                continue
            while self.api is not None:
                try:
                    await self.api.post_event(
                        problem.ingress,
                        uid,
                        problem.type,
                        problem.reason,
                        problem.message,
                        self.component,
                    )
                except KubeError as error:
                    if not retryable(error):
                        log.error("cannot post an event on %s: %s", problem.ingress, error)
                        break
                    delay = backoff.next()
                    log.warning(
                        "cannot post an event on %s (%s); retrying in %.1fs",
                        problem.ingress,
                        error,
                        delay,
                    )
                    await self._sleep(delay)
                    beat.beat()
                else:
                    backoff.reset()
                    self.posted += 1
                    break
