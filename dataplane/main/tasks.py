"""Fan-out / gather: one request sent to several workers, waiting for each final answer.

A `Gather` finishes when every targeted worker answered OK or FAILURE, died, or the deadline
passed; then it resumes the handler that started it. Verb handlers are generators that yield
a `Gather` and get it back finished (see `jobs.py`), so a slow worker never blocks main.
"""

from __future__ import annotations

from collections.abc import Callable

from dataplane.command.messages import Empty, Request
from dataplane.command.responses import ResponseContent, ResponseStatus, WorkerResponse
from dataplane.main.loop import EventLoop, Timer

_NOBODY = -1  # the one participant of a `Pause`


class Gather:
    def __init__(self, request: Request, worker_ids: list[int], timeout: float | None) -> None:
        self.request = request
        self.timeout = timeout
        self.pending: set[int] = set(worker_ids)
        self.answers: dict[int, WorkerResponse] = {}
        self.failures: dict[int, str] = {}
        self.on_done: Callable[[Gather], None] | None = None
        self.on_progress: Callable[[int, WorkerResponse], None] | None = None
        self.timer: Timer | None = None

    @property
    def done(self) -> bool:
        return not self.pending

    @property
    def ok(self) -> bool:
        return self.done and not self.failures

    def answer(self, worker_id: int, response: WorkerResponse) -> None:
        if worker_id not in self.pending:
            return
        if response.status == ResponseStatus.PROCESSING:
            if self.on_progress is not None:
                self.on_progress(worker_id, response)
            return
        self.pending.discard(worker_id)
        if response.status == ResponseStatus.OK:
            self.answers[worker_id] = response
        else:
            self.failures[worker_id] = response.message or "failed"
        self._maybe_finish()

    def lose(self, worker_id: int, reason: str) -> None:
        """The worker died or its channel broke before answering."""
        if worker_id in self.pending:
            self.pending.discard(worker_id)
            self.failures[worker_id] = reason
            self._maybe_finish()

    def expire(self) -> None:
        for worker_id in sorted(self.pending):
            self.failures[worker_id] = f"no answer within {self.timeout:g} s"
        self.pending.clear()
        self._maybe_finish()

    def contents(self) -> dict[int, ResponseContent]:
        return {wid: r.content for wid, r in self.answers.items() if r.content is not None}

    def failure_message(self) -> str:
        return ", ".join(
            f"worker {worker_id}: {reason}" for worker_id, reason in sorted(self.failures.items())
        )

    def _maybe_finish(self) -> None:
        if not self.done:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback(self)


class Pause(Gather):
    """A job step that only waits `seconds` (no worker involved): yield it like a Gather."""

    def __init__(self, loop: EventLoop, seconds: float) -> None:
        super().__init__(Request.of(status=Empty()), [_NOBODY], None)
        self.timer = loop.call_later(seconds, self._elapsed)

    def _elapsed(self) -> None:
        self.timer = None
        self.pending.clear()
        self._maybe_finish()
