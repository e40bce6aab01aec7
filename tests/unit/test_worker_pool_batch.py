"""WorkerPool.batch: a batch of requests reaches each worker in one write, at the end."""

from __future__ import annotations

from typing import Any

from dataplane.command.messages import Request, ServerConfig
from dataplane.command.scm import Listeners
from dataplane.main.workers import Worker, WorkerPool


class FakeChannel:
    def __init__(self) -> None:
        self.queued: list[Any] = []
        self.writes: list[list[Any]] = []

    def send(self, message: Any) -> None:
        self.queued.append(message)

    def flush(self) -> bool:
        if self.queued:
            self.writes.append(self.queued)
            self.queued = []
        return True

    @property
    def wants_write(self) -> bool:
        return bool(self.queued)


class FakeLoop:
    def __init__(self) -> None:
        self.watched: list[Any] = []

    def modify(self, fileobj: Any, events: int, callback: Any) -> None:
        self.watched.append(fileobj)

    def call_later(self, delay: float, callback: Any) -> Any:
        return None


def _pool() -> tuple[WorkerPool, list[FakeChannel]]:
    loop = FakeLoop()
    pool = WorkerPool(loop, ServerConfig(), 2, False, list, Listeners, lambda *a: None)  # type: ignore[arg-type]
    channels = []
    for worker_id in (0, 1):
        channel = FakeChannel()
        worker = Worker(worker_id, None, channel, None)  # type: ignore[arg-type]
        worker.booted = True
        worker.run_state = 0  # type: ignore[assignment]  # anything but STOPPED
        pool.workers[worker_id] = worker
        channels.append(channel)
    return pool, channels


def _requests(n: int) -> list[Request]:
    return [Request.of(remove_cluster=f"c{i}") for i in range(n)]


def test_outside_a_batch_each_request_is_written_at_once() -> None:
    pool, channels = _pool()
    for request in _requests(3):
        pool.scatter(request, None)
    assert [len(write) for write in channels[0].writes] == [1, 1, 1]


def test_a_batch_is_one_write_per_worker_when_it_ends() -> None:
    pool, channels = _pool()
    with pool.batch():
        for request in _requests(6):
            pool.scatter(request, None)
        assert channels[0].writes == [] and channels[1].writes == []
    for channel in channels:
        assert len(channel.writes) == 1
        assert [m.content.body for m in channel.writes[0]] == [f"c{i}" for i in range(6)]


def test_a_batch_that_raises_still_sends_what_it_scattered() -> None:
    pool, channels = _pool()
    try:
        with pool.batch():
            pool.scatter(_requests(1)[0], None)
            raise RuntimeError("refused")
    except RuntimeError:
        pass
    assert len(channels[0].writes) == 1
