"""Reconfiguration under load: `reload` of a changed file, SIGHUP, 200 hot changes.

None of them restarts anything: every connection and request must survive.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from load import Counts, Load

from dataplane.cli.client import CommandClient
from dataplane.command.address import SocketAddress
from dataplane.command.messages import AddBackend, RemoveBackend, Request
from dataplane.command.responses import ResponseStatus
from dataplane.command.statefile import read_state_file

pytestmark = pytest.mark.timeout(60)


def _nothing_lost(counts: Counts) -> None:
    assert counts.answered > 500, counts.summary()
    nothing = {"failed": 0, "refused": 0, "reset": 0, "idle_closed": 0, "retried": 0}
    assert {name: getattr(counts, name) for name in nothing} == nothing, counts.summary()


def _wait_for(pysozu: Any, port: int, host: str, body: bytes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while pysozu.http_get(port, host) != (200, body):
        assert time.monotonic() < deadline, f"{host} never answered {body!r}"
        time.sleep(0.05)


def test_reload_of_a_changed_file_under_load(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    app, app2, other = backends.start("app"), backends.start("app"), backends.start("other")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    changed = pysozu.http_config(
        port, {"app": ("example.com", [app, app2]), "other": ("other.com", [other])}
    )
    outputs: list[Any] = []

    def reload() -> None:
        pysozu.write_config(changed, proxy.directory)
        outputs.append(proxy.cli("reload"))

    counts = Load(port, "example.com").during(reload, before=1.5, after=1.5)
    assert outputs[0].returncode == 0, outputs[0].stderr
    # Only the difference: backend app-2, cluster other, its frontend and its backend.
    assert "4 ok messages, 0 errors" in outputs[0].stdout
    assert pysozu.http_get(port, "other.com") == (200, b"other")
    _nothing_lost(counts)


def test_sighup_reloads_the_file(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    app, other = backends.start("app"), backends.start("other")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    changed = pysozu.http_config(
        port, {"app": ("example.com", [app]), "other": ("other.com", [other])}
    )
    pysozu.write_config(changed, proxy.directory)
    os.kill(proxy.process.pid, signal.SIGHUP)
    _wait_for(pysozu, port, "other.com", b"other")
    assert "received SIGHUP: reloading" in proxy.log()


def test_200_hot_changes_under_load_are_saved_atomically(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    app, app2 = backends.start("app"), backends.start("app")
    saved = 'automatic_state_save = true\nsaved_state = "state.json"\n'
    proxy = pysozu.start(saved + pysozu.http_config(port, {"app": ("example.com", [app])}))
    address = SocketAddress.parse(f"127.0.0.1:{app2}")
    add = Request.of(add_backend=AddBackend(cluster_id="app", backend_id="b2", address=address))
    remove = Request.of(
        remove_backend=RemoveBackend(cluster_id="app", backend_id="b2", address=address)
    )
    answers: list[int] = []

    def change() -> None:
        with CommandClient(proxy.socket_path, 15.0, 10_000_000) as client:
            for n in range(200):
                answers.append(client.request(add if n % 2 == 0 else remove).status)
                if n % 2 == 0:  # the saved file is whole at every moment
                    requests, errors = read_state_file(proxy.directory / "state.json")
                    assert not errors and requests

    counts = Load(port, "example.com").during(change, before=1.0, after=1.0)
    assert answers == [ResponseStatus.OK] * 200
    requests, errors = read_state_file(proxy.directory / "state.json")
    assert not errors
    verbs = [r.verb for r in requests]
    assert verbs.count("add_backend") == 1  # b2 was removed last
    _nothing_lost(counts)
