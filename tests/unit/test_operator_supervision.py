"""The controller's loops outlive every failure, and /healthz says when one cannot (no sockets,
no sleeps: fake clocks and sleeps)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import urllib3
from ingress_operator.events import EventRecorder
from ingress_operator.kube import KubeApi, KubeError
from ingress_operator.model import ObjectKey
from ingress_operator.render import Problem
from ingress_operator.status import LeaseElector
from ingress_operator.supervision import Backoff, Heartbeat, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records the delays asked for and yields once instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def spin(times: int = 20) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=0.5, limit=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_failing_loop_is_restarted_with_backoff_and_never_ends() -> None:
    sleeps = Sleeps()
    runs: list[int] = []

    async def loop(heartbeat: Heartbeat) -> None:
        runs.append(1)
        if len(runs) < 4:
            # what the kubernetes client raises when urllib3 gives up: not an OSError
            raise urllib3.exceptions.MaxRetryError(None, "/apis", "refused")  # type: ignore[arg-type]
        await asyncio.Event().wait()  # then it runs normally

    async def scenario() -> tuple[list[str], int]:
        supervisor = Supervisor(sleep=sleeps)
        beat = supervisor.spawn("lease", loop, stall_after=60)
        await spin()
        problems = supervisor.problems()
        await supervisor.stop()
        return problems, beat.restarts

    problems, restarts = asyncio.run(scenario())
    assert len(runs) == 4 and restarts == 3
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert problems == []


def test_healthz_names_a_stuck_task_and_a_dead_one() -> None:
    clock = Clock()

    async def idle(heartbeat: Heartbeat) -> None:
        await asyncio.Event().wait()

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        supervisor = Supervisor(sleep=Sleeps(), clock=clock)
        supervisor.spawn("status", idle, stall_after=120)
        supervisor.spawn("events", idle, stall_after=120)
        await spin()
        fresh = supervisor.problems()
        clock.now += 121
        supervisor.beats["events"].beat()
        stuck = supervisor.problems()
        supervisor.tasks["events"].cancel()
        await spin()
        dead = supervisor.problems()
        await supervisor.stop()
        return fresh, stuck, dead

    fresh, stuck, dead = asyncio.run(scenario())
    assert fresh == []
    assert stuck == ["status: stuck (no progress for 121s)"]
    assert dead == ["status: stuck (no progress for 121s)", "events: dead (cancelled)"]


@pytest.mark.parametrize(
    "raised",
    [
        urllib3.exceptions.MaxRetryError(None, "/apis", "refused"),  # type: ignore[arg-type]
        urllib3.exceptions.ReadTimeoutError(None, "/apis", "read timed out"),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("reset"),
        ConnectionRefusedError("refused"),
    ],
)
def test_every_client_failure_is_a_kube_error_and_every_call_has_a_timeout(
    raised: Exception,
) -> None:
    seen: dict[str, Any] = {}

    def method(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise raised

    api = KubeApi.__new__(KubeApi)
    api.timeout = 10.0
    api.failures = Counter()
    with pytest.raises(KubeError) as caught:
        asyncio.run(api._call(method, "name"))
    assert caught.value.status is None
    assert seen["_request_timeout"] == (5.0, 10.0)
    assert sum(api.failures.values()) == 1  # counted for pysozu_ingress_errors_total


class FlakyLeaseApi:
    """The Lease API failing with what the client raises, then working."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.created = 0

    async def read_lease(self, namespace: str, name: str) -> None:
        if self.failures:
            raise self.failures.pop(0)

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.created += 1


def test_the_lease_loop_survives_any_exception_and_takes_the_lease_afterwards() -> None:
    api = FlakyLeaseApi([KubeError("refused"), RuntimeError("odd answer"), KubeError("500", 500)])
    sleeps = Sleeps()
    elected: list[bool] = []
    elector = LeaseElector(api, "ns", "lease", "me", sleep=sleeps)  # type: ignore[arg-type]

    async def on_elected() -> None:
        elected.append(True)

    async def scenario() -> None:
        task = asyncio.create_task(elector.run(on_elected))
        await spin()
        task.cancel()

    asyncio.run(scenario())
    assert elector.is_leader and elected == [True] and api.created >= 1
    assert sleeps.delays[:4] == [0.5, 1.0, 2.0, 5.0]  # back-off, then the renewal period


class FlakyEventApi:
    def __init__(self, failures: dict[str, list[KubeError]]) -> None:
        self.failures = failures
        self.posted: list[str] = []

    async def post_event(
        self, ingress: ObjectKey, uid: str, kind: str, reason: str, *_: Any
    ) -> None:
        if self.failures.get(reason):
            raise self.failures[reason].pop(0)
        self.posted.append(reason)


def test_events_are_retried_when_the_api_server_may_recover_and_dropped_when_refused() -> None:
    api = FlakyEventApi(
        {"First": [KubeError("refused"), KubeError("503", 503)], "Refused": [KubeError("422", 422)]}
    )
    sleeps = Sleeps()
    recorder = EventRecorder(api, "test", sleep=sleeps)  # type: ignore[arg-type]
    key = ObjectKey("d", "i")

    async def scenario() -> None:
        task = asyncio.create_task(recorder.post_forever())
        recorder.record([Problem(key, "First", "m")], {})
        await spin()
        recorder.record([Problem(key, "Refused", "m"), Problem(key, "Third", "m")], {})
        await spin()
        task.cancel()

    asyncio.run(scenario())
    assert api.posted == ["First", "Third"]  # "Refused" got a 422: logged and dropped
    assert sleeps.delays == [0.5, 1.0]


def test_api_timeout_and_election_id_flags() -> None:
    from ingress_operator.cli import parser, settings_from

    defaults = settings_from(parser().parse_args(["--command-socket", "s"]))
    assert defaults.api_timeout == 10.0 and defaults.lease_name == "pysozu-ingress-leader"
    chosen = settings_from(
        parser().parse_args(
            ["--command-socket", "s", "--api-timeout", "2.5", "--election-id", "edge-leader"]
        )
    )
    assert chosen.api_timeout == 2.5 and chosen.lease_name == "edge-leader"
    for bad in (["--api-timeout", "0"], ["--api-timeout", "x"], ["--election-id", "Not_A_Name"]):
        with pytest.raises(SystemExit):
            parser().parse_args(["--command-socket", "s", *bad])


def test_status_writes_to_a_slow_api_server_are_progress() -> None:
    """A thousand writes, each slow: the status loop beats after every one, never stuck."""
    from pathlib import Path

    from ingress_operator.settings import Settings
    from ingress_operator.status import StatusPublisher

    clock = Clock()

    class SlowApi:
        async def patch_ingress_status(self, key: ObjectKey, *_: Any) -> None:
            clock.now += 10  # each write takes the API timeout
            if key.name == "bad":
                raise KubeError("500", 500)

    elector = LeaseElector(SlowApi(), "ns", "lease", "me")  # type: ignore[arg-type]
    publisher = StatusPublisher(SlowApi(), Settings(Path("s")), elector)  # type: ignore[arg-type]
    beat = Heartbeat("status", 120, clock)
    publisher._beat = beat
    changes = [(ObjectKey("d", f"i{n}"), (("ip", "192.0.2.1"),), None) for n in range(30)]
    changes.append((ObjectKey("d", "bad"), (("ip", "192.0.2.1"),), None))
    failed = asyncio.run(publisher._apply(changes))
    assert [key.name for key, _, _ in failed] == ["bad"]  # retried later, by the loop
    assert beat.stalled() is None and clock.now - beat.last == 0
