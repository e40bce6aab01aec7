"""Finding workers whose process is alive but whose loop is stuck.

Every second main sends `status` to each running worker that has no heartbeat outstanding.
A worker silent for `worker_timeout` is NOT_ANSWERING (shown by `status`, logged); silent for
`replace_after` (3 x `worker_timeout`, at least 5 s, so a long pause under load is not a death
sentence) it is killed with SIGKILL and replaced like a worker that died. A worker that answers
again is RUNNING again. One heartbeat at most is outstanding per worker: bounded memory.
"""

from __future__ import annotations

import logging
import time

from dataplane.command.messages import Empty, Request
from dataplane.command.responses import RunState
from dataplane.main.loop import EventLoop, Timer
from dataplane.main.tasks import Gather
from dataplane.main.workers import Worker, WorkerPool

log = logging.getLogger("pysozu.main.heartbeat")

INTERVAL = 1.0
MIN_REPLACE_AFTER = 5.0


class Heartbeat:
    def __init__(self, loop: EventLoop, pool: WorkerPool, worker_timeout: float) -> None:
        self.loop = loop
        self.pool = pool
        self.worker_timeout = worker_timeout
        self.replace_after = max(MIN_REPLACE_AFTER, 3 * worker_timeout)
        self._sent: dict[int, float] = {}  # worker id -> when its outstanding heartbeat left
        self._timer: Timer | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(INTERVAL, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if self.pool.stopping:
            return
        now = time.monotonic()
        for worker in self.pool.live():
            if not worker.booted or worker.run_state not in (
                RunState.RUNNING,
                RunState.NOT_ANSWERING,
            ):
                continue
            sent = self._sent.get(worker.id)
            if sent is None:
                self._send(worker, now)
            else:
                self._judge(worker, now - sent)
        live = {worker.id for worker in self.pool.live()}
        for worker_id in [w for w in self._sent if w not in live]:
            del self._sent[worker_id]
        self._timer = self.loop.call_later(INTERVAL, self._tick)

    def _send(self, worker: Worker, now: float) -> None:
        self._sent[worker.id] = now
        gather = self.pool.scatter(Request.of(status=Empty()), None, [worker])

        def answered(gather: Gather) -> None:
            self._sent.pop(worker.id, None)
            if worker.id in gather.answers:
                self.pool.adopt_info(worker, gather.answers[worker.id])
                if worker.run_state == RunState.NOT_ANSWERING:
                    log.info("worker %d (pid %d) answers again", worker.id, worker.pid)
                    worker.run_state = RunState.RUNNING

        if gather.done:
            answered(gather)
        else:
            gather.on_done = answered

    def _judge(self, worker: Worker, silent_for: float) -> None:
        if silent_for >= self.replace_after:
            self._sent.pop(worker.id, None)
            self.pool.replace_stuck(worker, silent_for)
        elif silent_for >= self.worker_timeout and worker.run_state == RunState.RUNNING:
            worker.run_state = RunState.NOT_ANSWERING
            log.warning(
                "worker %d (pid %d) has not answered a status request for %.1f s: NOT_ANSWERING",
                worker.id,
                worker.pid,
                silent_for,
            )
