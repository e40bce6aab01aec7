"""Workers dying or stuck, under load; and one listening address, one pysozu."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from typing import Any

import pytest
from load import Load

pytestmark = pytest.mark.timeout(60)


def _config(pysozu: Any, backends: Any, extra: str = "") -> tuple[str, int]:
    port = pysozu.free_port()
    backend = backends.start("app")
    return extra + pysozu.http_config(port, {"app": ("example.com", [backend])}), port


def _running(proxy: Any) -> dict[int, Any]:
    return {w.pid: w for w in proxy.workers() if w.run_state == 0}


def test_a_second_pysozu_cannot_take_the_same_address(pysozu: Any, backends: Any) -> None:
    toml, port = _config(pysozu, backends)
    first = pysozu.start(toml)
    second = pysozu.start(toml, wait=False)  # its own directory, hence its own command socket
    assert second.process.wait(timeout=20) == 1
    assert re.search(rf"127\.0\.0\.1:{port}: \[Errno 98\] Address already in use", second.log())
    for _ in range(20):  # the first one still gets every connection
        assert pysozu.http_get(port) == (200, b"app")
    first.wait_ready(workers=2)


def test_a_killed_worker_is_replaced_and_only_its_connections_suffer(
    pysozu: Any, backends: Any
) -> None:
    toml, port = _config(pysozu, backends)
    proxy = pysozu.start(toml)
    victim = next(iter(_running(proxy).values()))
    respawned_after: list[float] = []

    def kill() -> None:
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        while time.monotonic() - killed_at < 10:
            running = _running(proxy)
            if len(running) == 2 and victim.pid not in running:
                respawned_after.append(time.monotonic() - killed_at)
                return
            time.sleep(0.02)

    counts = Load(port, "example.com").during(kill, before=1.5, after=2.0)
    assert respawned_after, "the killed worker was not replaced"
    print(f"replacement running {respawned_after[0]:.2f} s after kill -9")
    # Launched 0.05 s after the death; booting Python takes most of the rest.
    assert respawned_after[0] < 3.0
    log = proxy.log()
    launched = re.search(r"relaunched worker (\d+)", log)
    assert launched and int(launched.group(1)) == 2  # the next id, as sozu
    assert "worker restarts 1" in proxy.cli("status").stdout
    assert counts.refused == 0  # main holds the socket: the port never closes
    assert counts.answered > 500
    # Only connections the dead worker had accepted may break: at most one per client.
    lost = counts.failed + counts.reset + counts.retried + counts.idle_closed
    assert lost <= 50 + 20, counts.summary()


def test_a_stuck_worker_is_reported_then_replaced(pysozu: Any, backends: Any) -> None:
    toml, port = _config(pysozu, backends, "worker_timeout = 1\n")
    proxy = pysozu.start(toml)
    frozen = next(iter(_running(proxy).values()))
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        seen_not_answering = False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = {w.pid: w.run_state for w in proxy.workers()}
            if states.get(frozen.pid) == 3:  # NOT_ANSWERING
                seen_not_answering = True
            if seen_not_answering and frozen.pid not in states and len(_running(proxy)) == 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"stuck worker not replaced:\n{proxy.log()}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed and reaped: the normal case
            os.kill(frozen.pid, signal.SIGCONT)
    assert "killing and replacing it" in proxy.log()
    assert pysozu.http_get(port) == (200, b"app")
