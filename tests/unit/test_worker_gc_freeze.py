"""The worker's boot state leaves the collector's walk (boot.py: gc.freeze() once booted) until
the first change of state (commands.py: gc.unfreeze()), so that what a change drops can be
collected again; later changes find nothing frozen and do nothing more.

Driven through `begin_worker_process` itself, its `_boot` replaced by one that builds a real
Loop and CommandHandler and applies a boot state as `_boot` does, without main's sockets: the
channel is a stand-in on an eventfd (the loop registers its descriptor), and the loop is told
to stop before its first turn."""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.command.messages import Cluster, Request, ServerConfig, WorkerRequest
from dataplane.command.responses import ResponseStatus, WorkerResponse
from dataplane.proxy.worker import boot
from dataplane.proxy.worker.commands import CommandHandler
from dataplane.proxy.worker.loop import Loop


class Channel:
    """What the loop uses of main's channel: a descriptor to register, and its answers."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0)
        self.sent: list[WorkerResponse] = []

    def fileno(self) -> int:
        return self.fd

    def send(self, response: WorkerResponse) -> None:
        self.sent.append(response)

    def flush(self) -> bool:
        return True


class Cycle:
    """Garbage only the collector frees: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def gc_state() -> Iterator[None]:
    """The process's collector as the test found it: nothing frozen, collection enabled."""
    assert gc.get_freeze_count() == 0, "something froze objects before this test"
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def add_cluster(request_id: str, cluster_id: str) -> WorkerRequest:
    return WorkerRequest(
        id=request_id, content=Request.of(add_cluster=Cluster(cluster_id=cluster_id))
    )


def test_the_boot_state_is_frozen_until_the_first_change_of_state(
    gc_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = Channel()
    made: dict[str, Any] = {}

    def fake_boot(*_args: int) -> Loop:
        loop = Loop(ServerConfig(), channel, None)  # type: ignore[arg-type]
        commands = CommandHandler(loop, 0)
        loop.on_message = commands.handle
        commands.apply_state(add_cluster("boot-0", "booted"))  # the state file's requests
        made["boot garbage"] = Cycle()  # made while booting, dropped later
        made["commands"] = commands
        loop.running = False  # run() returns before its first turn
        return loop

    unfreezes: list[None] = []
    real_unfreeze = gc.unfreeze

    def counted_unfreeze() -> None:
        unfreezes.append(None)
        real_unfreeze()

    monkeypatch.setattr(boot, "_boot", fake_boot)
    monkeypatch.setattr(gc, "unfreeze", counted_unfreeze)
    try:
        assert boot.begin_worker_process(-1, -1, -1, 0, 1000, 2000) == 0
    finally:
        os.close(channel.fd)

    # Booted: what booting made is frozen, and stays so however often the collector runs.
    assert gc.get_freeze_count() > 0
    garbage = weakref.ref(made.pop("boot garbage"))
    gc.collect()
    assert garbage() is not None, "a frozen cycle was collected: nothing was frozen"
    assert unfreezes == []  # applying the boot state unfroze nothing
    commands: CommandHandler = made.pop("commands")
    loop = commands.loop
    boot_state = weakref.ref(loop.state)

    # The first change of state unfreezes: the boot state it replaces, and the boot garbage,
    # can be collected.
    commands.handle(add_cluster("change-1", "first"))
    assert channel.sent[-1].status == ResponseStatus.OK, channel.sent[-1]
    assert sorted(loop.state.clusters) == ["booted", "first"]
    assert unfreezes == [None]
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert garbage() is None
    assert boot_state() is None

    # A second change finds nothing frozen: no second unfreeze.
    commands.handle(add_cluster("change-2", "second"))
    assert channel.sent[-1].status == ResponseStatus.OK, channel.sent[-1]
    assert sorted(loop.state.clusters) == ["booted", "first", "second"]
    assert unfreezes == [None]
    assert gc.get_freeze_count() == 0
