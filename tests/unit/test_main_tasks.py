"""Fan-out/gather bookkeeping and the generator job driver, without processes or sockets."""

from __future__ import annotations

import pytest

from dataplane.command.messages import Empty, Request
from dataplane.command.responses import Response, ResponseStatus, WorkerResponse
from dataplane.main.jobs import Job, run_job
from dataplane.main.tasks import Gather

pytestmark = pytest.mark.timeout(10)

STATUS = Request.of(status=Empty())


def answer(status: ResponseStatus, message: str = "") -> WorkerResponse:
    return WorkerResponse(id="x", status=status, message=message)


def test_gather_finishes_when_every_worker_answered() -> None:
    finished: list[Gather] = []
    gather = Gather(STATUS, [1, 2], timeout=10)
    gather.on_done = finished.append
    gather.answer(1, answer(ResponseStatus.OK))
    assert not gather.done and not finished
    gather.answer(2, answer(ResponseStatus.PROCESSING))
    assert not gather.done
    gather.answer(2, answer(ResponseStatus.FAILURE, "no such cluster"))
    assert gather.done and finished == [gather]
    assert not gather.ok
    assert gather.failure_message() == "worker 2: no such cluster"


def test_gather_names_dead_and_silent_workers() -> None:
    gather = Gather(STATUS, [3, 1, 2], timeout=2)
    gather.lose(3, "worker died (exited with status -9)")
    gather.answer(1, answer(ResponseStatus.OK))
    gather.expire()
    assert gather.done
    assert gather.failure_message() == (
        "worker 2: no answer within 2 s, worker 3: worker died (exited with status -9)"
    )


def test_answers_from_unknown_workers_are_ignored() -> None:
    gather = Gather(STATUS, [1], timeout=None)
    gather.answer(7, answer(ResponseStatus.FAILURE))
    assert not gather.done and not gather.failures


def test_an_empty_gather_is_done_at_once() -> None:
    assert Gather(STATUS, [], timeout=1).ok


def test_run_job_resumes_the_handler_with_each_finished_gather() -> None:
    first = Gather(STATUS, [1], timeout=None)
    second = Gather(STATUS, [], timeout=None)  # already done: resumed without waiting
    seen: list[Gather] = []

    def handler() -> Job:
        seen.append((yield first))
        seen.append((yield second))
        return Response.ok("done")

    results: list[Response | None] = []
    run_job(handler(), results.append)
    assert results == []  # waiting for worker 1
    first.answer(1, answer(ResponseStatus.OK))
    assert seen == [first, second]
    assert results[0] is not None and results[0].message == "done"


def test_run_job_turns_a_handler_bug_into_a_failure() -> None:
    def handler() -> Job:
        raise KeyError("oops")
        yield  # pragma: no cover

    results: list[Response | None] = []
    run_job(handler(), results.append)
    assert results[0] is not None and results[0].status == ResponseStatus.FAILURE
    assert "internal error" in results[0].message


def test_run_job_passes_plain_responses_through() -> None:
    results: list[Response | None] = []
    run_job(Response.failure("no"), results.append)
    run_job(None, results.append)
    assert results[0] is not None and results[0].message == "no"
    assert results[1] is None


def test_a_failing_callback_does_not_stop_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    from dataplane.main.loop import EventLoop

    loop = EventLoop()
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("bug")

    loop.call_later(0, broken)
    loop.call_later(0, lambda: ran.append("next"))
    loop.call_later(0, loop.stop)
    cancelled = loop.call_later(0, lambda: ran.append("cancelled"))
    cancelled.cancel()
    loop.run()
    loop.close()
    assert ran == ["next"]
    assert "internal error in main's event loop" in caplog.text
