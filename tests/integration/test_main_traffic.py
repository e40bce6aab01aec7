"""Traffic through real workers follows every change at once, survives worker deaths and
restarts from saved state."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dataplane.command.messages import Empty, Request

pytestmark = pytest.mark.timeout(90)


def test_two_clusters_each_get_their_own_traffic(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    a1, a2, b1 = backends.start("a-1"), backends.start("a-2"), backends.start("b-1")
    proxy = pysozu.start(
        pysozu.http_config(port, {"alpha": ("a.com", [a1, a2]), "beta": ("b.com", [b1])})
    )
    seen = {pysozu.http_get(port, "a.com")[1] for _ in range(6)}
    assert seen == {b"a-1", b"a-2"}  # round robin over both
    assert all(pysozu.http_get(port, "b.com") == (200, b"b-1") for _ in range(3))
    assert pysozu.http_get(port, "nobody.com")[0] == 404
    assert proxy.process.poll() is None


class KeepAliveClient(threading.Thread):
    """Requests in a loop on ONE connection until stopped; records every answer."""

    def __init__(self, port: int, host: str) -> None:
        super().__init__(daemon=True)
        self.port, self.host = port, host
        self.answers: list[tuple[int, bytes]] = []
        self.errors: list[str] = []
        self.sockets: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        deadline = time.monotonic() + 30
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    connection.request("GET", "/", headers={"Host": self.host})
                    response = connection.getresponse()
                    self.answers.append((response.status, response.read()))
                    self.sockets.add(id(connection.sock))
                except (OSError, http.client.HTTPException) as error:
                    self.errors.append(repr(error))
                    return
        finally:
            connection.close()


def test_blue_green_under_traffic(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    blue, green = backends.start("blue"), backends.start("green")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [blue])}))
    client = KeepAliveClient(port, "example.com")
    client.start()
    try:
        deadline = time.monotonic() + 10
        while len(client.answers) < 20 and time.monotonic() < deadline and not client.errors:
            time.sleep(0.01)
        added = proxy.cli(
            "backend",
            "add",
            "--id",
            "app",
            "--backend-id",
            "green",
            "--address",
            f"127.0.0.1:{green}",
        )
        assert added.returncode == 0, added.stderr
        removed = proxy.cli(
            "backend",
            "remove",
            "--id",
            "app",
            "--backend-id",
            "app-1",
            "--address",
            f"127.0.0.1:{blue}",
        )
        assert removed.returncode == 0, removed.stderr
        count = len(client.answers)
        while len(client.answers) < count + 20 and time.monotonic() < deadline + 10:
            time.sleep(0.01)
    finally:
        client.stop.set()
        client.join(timeout=10)
    assert not client.errors, client.errors
    assert len(client.answers) >= 40
    assert all(status == 200 for status, _ in client.answers)
    bodies = [body for _, body in client.answers]
    assert bodies[0] == b"blue" and set(bodies[-10:]) == {b"green"}
    assert len(client.sockets) == 1  # one client connection from start to end: none dropped


def test_saved_state_brings_back_the_runtime_routes(
    pysozu: Any, backends: Any, tmp_path: Path
) -> None:
    port = pysozu.free_port()
    backend = backends.start("runtime")
    state = tmp_path / "state.json"
    toml = f'saved_state = "{state}"\n' + (
        f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n'
    )
    proxy = pysozu.start(toml)
    for argv in (
        ["cluster", "add", "--id", "app"],
        [
            "backend",
            "add",
            "--id",
            "app",
            "--backend-id",
            "app-1",
            "--address",
            f"127.0.0.1:{backend}",
        ],
        [
            "frontend",
            "http",
            "add",
            "--address",
            f"127.0.0.1:{port}",
            "--hostname",
            "example.com",
            "id",
            "app",
        ],
        ["state", "save", "--file", str(state)],
        ["shutdown"],
    ):
        result = proxy.cli(*argv)
        assert result.returncode == 0, (argv, result.stderr)
    assert proxy.process.wait(timeout=20) == 0
    again = pysozu.start_file(proxy.config_path, proxy.socket_path)
    assert pysozu.http_get(port, "example.com") == (200, b"runtime")
    assert "loaded saved state" in again.log()


def test_automatic_state_save_keeps_the_file_current(
    pysozu: Any, backends: Any, tmp_path: Path
) -> None:
    port = pysozu.free_port()
    backend = backends.start("auto")
    state = tmp_path / "auto.state"
    toml = (
        f'saved_state = "{state}"\nautomatic_state_save = true\n'
        f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n'
    )
    proxy = pysozu.start(toml)
    assert proxy.cli("cluster", "add", "--id", "app").returncode == 0
    assert b"ADD_CLUSTER" in state.read_bytes()
    proxy.cli(
        "backend", "add", "--id", "app", "--backend-id", "b", "--address", f"127.0.0.1:{backend}"
    )
    proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "auto.com", "id", "app"
    )
    proxy.process.send_signal(signal.SIGKILL)  # no goodbye: the file must already be right
    proxy.process.wait(timeout=10)
    for pid in _orphans(proxy):
        os.kill(pid, signal.SIGKILL)
    os.unlink(proxy.socket_path)
    pysozu.start_file(proxy.config_path, proxy.socket_path)
    assert pysozu.http_get(port, "auto.com") == (200, b"auto")


def _orphans(proxy: Any) -> list[int]:
    """Workers of a main killed with -9 (they exit when their channel closes; be sure)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"pysozu worker") and os.getppid() != int(entry):
                status = Path(f"/proc/{entry}/status").read_text()
                if f"PPid:\t{proxy.process.pid}\n" in status or "PPid:\t1\n" in status:
                    pids.append(int(entry))
    return pids


def test_a_killed_worker_is_replaced_and_traffic_goes_on(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    backend = backends.start("alive")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [backend])}))
    before = {info.pid for info in proxy.workers()}
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    listed: set[int] = set(before)
    while time.monotonic() < killed_at + 5:  # list_workers: main's table, no worker round trip
        infos = proxy.request(Request.of(list_workers=Empty())).content.value.vec
        listed = {info.pid for info in infos}
        if victim not in listed and len(listed) == 2:
            break
        time.sleep(0.02)
    assert victim not in listed and len(listed) == 2, proxy.log()
    assert time.monotonic() - killed_at < 1.0  # respawned within a second
    proxy.wait_ready(workers=2)
    assert all(pysozu.http_get(port, "example.com") == (200, b"alive") for _ in range(10))
    assert "WORKER" not in proxy.cli("status").stderr
    assert "relaunched worker" in proxy.log()


def test_no_automatic_restart_means_no_restart(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    backend = backends.start("x")
    proxy = pysozu.start(
        "worker_automatic_restart = false\n"
        + pysozu.http_config(port, {"app": ("example.com", [backend])})
    )
    victim = proxy.workers()[0].pid
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while len(proxy.workers()) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(proxy.workers()) == 1
    assert pysozu.http_get(port, "example.com") == (200, b"x")  # the other one serves


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.mark.timeout(60)
def test_start_without_config_serves_the_demo(tmp_path: Path) -> None:
    if not _ports_free(8080, 18081, 18082):
        pytest.skip("the embedded default config needs 127.0.0.1:8080, 18081 and 18082")
    main = subprocess.Popen(
        [sys.executable, "-m", "dataplane", "start"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        bodies: set[bytes] = set()
        while len(bodies) < 2 and time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", 8080, timeout=2)
                connection.request("GET", "/")
                bodies.add(connection.getresponse().read())
                connection.close()
            except OSError:
                time.sleep(0.1)
        assert bodies == {b"hello from demo backend 1\n", b"hello from demo backend 2\n"}
        assert (tmp_path / "sozu.sock").exists()
        main.send_signal(signal.SIGTERM)
        assert main.wait(timeout=20) == 0
        assert _ports_free(18081, 18082)  # the demo backends stopped with main
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
