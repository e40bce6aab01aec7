"""Running verb handlers that wait for workers without blocking main.

A handler is either a plain function returning the final `Response`, or a generator that
yields `Gather`s (already sent) and is resumed with each one once finished; its return value
is the final `Response` (None: the request never ends, as `subscribe_events`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Protocol

from dataplane.command.responses import Response, ResponseContent
from dataplane.main.tasks import Gather

log = logging.getLogger("pysozu.main.jobs")

Job = Generator[Gather, Gather, Response | None]
Outcome = Response | None | Job


class Reply(Protocol):
    """Where a handler's progress frames go (a CLI client, or nowhere for signal-driven jobs)."""

    def processing(self, message: str, content: ResponseContent | None = None) -> None: ...


class NoReply:
    def processing(self, message: str, content: ResponseContent | None = None) -> None:
        log.info("%s", message)


def run_job(outcome: Outcome, finish: Callable[[Response | None], None]) -> None:
    """Drive `outcome` to its end, calling `finish` with the final response."""
    if not isinstance(outcome, Generator):
        finish(outcome)
        return
    job = outcome

    def step(value: Gather | None) -> None:
        while True:
            try:
                gather = job.send(value)  # type: ignore[arg-type]
            except StopIteration as stop:
                finish(stop.value)
                return
            except Exception as error:  # a handler bug must not take main down
                log.exception("internal error while handling a request")
                finish(Response.failure(f"internal error in main: {error}"))
                return
            if not gather.done:
                gather.on_done = step
                return
            value = gather

    step(None)
