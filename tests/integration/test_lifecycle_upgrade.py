"""Upgrades under load: one worker, then main and every worker. Nothing may be lost."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from load import Counts, Load

pytestmark = pytest.mark.timeout(90)


def _start(pysozu: Any, backends: Any, extra: str = "") -> tuple[Any, int]:
    port = pysozu.free_port()
    backend = backends.start("app")
    toml = extra + pysozu.http_config(port, {"app": ("example.com", [backend])})
    return pysozu.start(toml), port


def _nothing_lost(counts: Counts) -> None:
    assert counts.answered > 500, counts.summary()
    assert (counts.failed, counts.refused, counts.reset) == (0, 0, 0), counts.summary()
    # A draining worker answers every request that reaches it (the last with `Connection:
    # close`) and half-closes only idle connections whose grace is over: no request of a
    # client sending back to back ever races a close, so none needs a retry.
    assert counts.retried == 0, counts.summary()


def test_upgrade_one_worker_under_load(pysozu: Any, backends: Any) -> None:
    proxy, port = _start(pysozu, backends)
    before = {w.id: w.pid for w in proxy.workers()}
    outputs: list[Any] = []
    counts = Load(port, "example.com").during(
        lambda: outputs.append(proxy.cli("upgrade", "--worker", "0")), before=1.5, after=2.0
    )
    result = outputs[0]
    assert result.returncode == 0, result.stderr
    assert "Launched a new worker with id 2" in result.stdout  # PROCESSING, then the next id
    assert "worker 0 was replaced by worker 2" in result.stdout
    after = {w.id: w.pid for w in proxy.workers()}
    assert sorted(after) == [1, 2] and after[1] == before[1]
    _nothing_lost(counts)


def test_upgrade_main_and_every_worker_under_load(pysozu: Any, backends: Any) -> None:
    proxy, port = _start(pysozu, backends, 'pid_file_path = "pysozu.pid"\n')
    old_pids = {w.pid for w in proxy.workers()}
    outputs: list[Any] = []
    counts = Load(port, "example.com").during(
        lambda: outputs.append(proxy.cli("upgrade", timeout=60)), before=1.5, after=2.0
    )
    result = outputs[0]
    assert result.returncode == 0, result.stderr + proxy.log()
    assert "Upgrade successful, closing main process. New main process has pid" in result.stdout
    new_main = int(result.stdout.split("New main process has pid ")[1].split()[0])
    assert proxy.process.wait(timeout=10) == 0  # the old main exited cleanly
    assert new_main != proxy.process.pid
    status = proxy.cli("status")
    assert f"main: pid {new_main}, version " in status.stdout
    assert "main upgrades 1" in status.stdout
    workers = proxy.workers()
    assert sorted(w.id for w in workers) == [2, 3]
    assert not old_pids & {w.pid for w in workers}
    assert (proxy.directory / "pysozu.pid").read_text().strip() == str(new_main)
    _nothing_lost(counts)
    stop = proxy.cli("shutdown")  # the new main is the one that answers and stops
    assert stop.returncode == 0, stop.stderr


def test_a_new_main_that_cannot_start_leaves_the_old_one_serving(
    pysozu: Any, backends: Any
) -> None:
    proxy, port = _start(pysozu, backends)
    workers = proxy.workers()
    good = proxy.config_path.read_text()
    # The new main re-reads the file main was started with; the CLI only needs the socket.
    cli_config = proxy.directory / "cli.toml"
    cli_config.write_text(f'command_socket = "{proxy.socket_path}"\n')
    proxy.config_path.write_text(good + "\n[[listeners]]\nprotocol = 'nonsense'\n")
    try:
        result = proxy.cli("-c", str(cli_config), "upgrade", timeout=60)
    finally:
        proxy.config_path.write_text(good)
    assert result.returncode == 1
    assert "upgrade failed: the new main process" in result.stderr
    assert "exited before confirming" in result.stderr
    status = proxy.cli("status")
    assert f"main: pid {proxy.process.pid}," in status.stdout  # still the same main
    assert proxy.workers() == workers
    assert pysozu.http_get(port) == (200, b"app")
    assert proxy.cli("cluster", "add", "-i", "later").returncode == 0


def test_main_under_a_container_init_refuses_to_upgrade(
    pysozu: Any, backends: Any, tmp_path: Path
) -> None:
    # A shell named `tini`: the kernel names a process after the file it ran, so main's parent
    # reads as tini in /proc, as in a container whose init ends it when main exits.
    init = tmp_path / "tini"
    init.symlink_to(shutil.which("sh") or "/bin/sh")
    port = pysozu.free_port()
    toml = pysozu.http_config(port, {"app": ("example.com", [backends.start("app")])})
    config_path, socket_path = pysozu.write_config(toml)
    shell = [str(init), "-c", '"$@"; exit $?', "tini"]  # a second command: sh cannot exec
    proxy = pysozu.start_file(config_path, socket_path, launcher=shell)
    try:
        result = proxy.cli("upgrade", timeout=60)
        assert result.returncode == 1
        assert "no upgrade of main: main runs under tini (pid " in result.stderr
        assert "replace the container" in result.stderr
        worker = proxy.cli("upgrade", "--worker", "0", timeout=60)
        assert worker.returncode == 0, worker.stderr
        assert pysozu.http_get(port, host="example.com")[0] == 200
    finally:
        assert proxy.cli("shutdown").returncode == 0  # main, not the shell the fixture knows
