"""Problems -> Kubernetes Events on the Ingress they concern, each said once (not every render).

A problem is posted when first seen and again only after `repeat_after` seconds while it
persists. Posting runs in the background through a bounded queue: a slow API server never
slows reconciling, and a flood of problems is dropped (and logged) rather than kept in memory.
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

log = logging.getLogger("pysozu.ingress.events")

_QUEUE_SIZE = 1000
_MEMORY = 10_000


class EventRecorder:
    def __init__(self, api: KubeApi | None, component: str, repeat_after: float = 3600.0) -> None:
        self.api = api
        self.component = component
        self.repeat_after = repeat_after
        self._posted: OrderedDict[Problem, float] = OrderedDict()
        self._queue: asyncio.Queue[tuple[Problem, str]] = asyncio.Queue(_QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._post_forever(), name="pysozu-ingress-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def record(self, problems: Iterable[Problem], uids: Mapping[ObjectKey, str]) -> None:
        clock = time.monotonic()
        for problem in problems:
            last = self._posted.get(problem)
            if last is not None and clock - last < self.repeat_after:
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

    async def _post_forever(self) -> None:
        while True:
            problem, uid = await self._queue.get()
            if self.api is None:
                continue
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
                log.error("cannot post an event on %s: %s", problem.ingress, error)
