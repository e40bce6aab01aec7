"""WorkerPool.reap: a worker that answered, then exited, is counted by its answer.

SIGCHLD may come before main reads the worker's channel: a stop's OK, the worker's last frame,
was then taken for a worker that died, and main exited with status 1."""

from __future__ import annotations

from typing import Any

from dataplane.command.channel import ChannelClosed
from dataplane.command.messages import HardStopOptions, Request, ServerConfig
from dataplane.command.responses import ResponseStatus, RunState, WorkerResponse
from dataplane.command.scm import Listeners
from dataplane.main.workers import Worker, WorkerPool


class ExitedProcess:
    pid = 4242
    returncode = 0

    def poll(self) -> int:
        return 0

    def kill(self) -> None:
        raise AssertionError("an exited worker is not killed")

    def wait(self, timeout: float | None = None) -> int:
        return 0


class LeftOver:
    """A channel holding what the worker wrote before it exited, then closed."""

    def __init__(self) -> None:
        self.frames: list[WorkerResponse] = []
        self.sent: list[Any] = []
        self.closed = False

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def flush(self) -> bool:
        return True

    @property
    def wants_write(self) -> bool:
        return False

    def receive(self) -> list[WorkerResponse]:
        if not self.frames:
            raise ChannelClosed("peer closed the channel")
        frames, self.frames = self.frames, []
        return frames

    def close(self) -> None:
        self.closed = True


class Closed:
    def close(self) -> None:
        pass


class FakeLoop:
    def modify(self, fileobj: Any, events: int, callback: Any) -> None:
        pass

    def remove(self, fileobj: Any) -> None:
        pass

    def call_later(self, delay: float, callback: Any) -> Any:
        return None


def _stopping_worker() -> tuple[WorkerPool, Worker, LeftOver]:
    pool = WorkerPool(FakeLoop(), ServerConfig(), 1, False, list, Listeners, lambda *a: None)  # type: ignore[arg-type]
    channel = LeftOver()
    worker = Worker(0, ExitedProcess(), channel, Closed())  # type: ignore[arg-type]
    worker.booted = True
    worker.run_state = RunState.RUNNING
    pool.workers[0] = worker
    return pool, worker, channel


def test_a_stop_answered_before_the_exit_counts_as_answered() -> None:
    pool, worker, channel = _stopping_worker()
    worker.run_state = RunState.STOPPING
    gather = pool.scatter(Request.of(hard_stop=HardStopOptions()), None, [worker])
    (request,) = channel.sent
    channel.frames.append(WorkerResponse(id=request.id, status=ResponseStatus.OK))
    pool.reap()  # SIGCHLD first: the OK is still in the channel
    assert gather.done and gather.ok, gather.failures
    assert not worker.alive and channel.closed


def test_an_exit_without_an_answer_still_fails_the_request() -> None:
    pool, worker, _channel = _stopping_worker()
    gather = pool.scatter(Request.of(hard_stop=HardStopOptions()), None, [worker])
    pool.reap()
    assert gather.done and not gather.ok
    assert "worker died (exited with status 0)" in gather.failures[0]
