"""Shared fixtures: real pysozu processes, the real CLI, tiny HTTP backends, on 127.0.0.1.

- `backends`: `backends.start("app-1")` -> a port whose backend answers `app-1` (keep-alive).
- `pysozu`: `pysozu.start(toml)` -> a running `Pysozu` (command socket answering, workers
  RUNNING); `.cli(...)` runs `python -m dataplane -c <its config> ...`; `.request(Request)`
  talks to the socket directly. The fixture also carries the helpers `free_port()`,
  `wait_for_port(port)`, `http_get(port, host, path)` and `http_config(port, clusters)`, so
  test modules need no import from this file (several test directories have a conftest).
Everything started is stopped at the end of the test, whatever happened.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from ports import free_port

from dataplane.cli.client import CommandClient, CommandError
from dataplane.command.messages import Empty, Request
from dataplane.command.responses import Response, ResponseStatus, RunState

PYTHON = sys.executable
START_TIMEOUT = 20.0


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def http_get(
    port: int, host: str = "example.com", path: str = "/", timeout: float = 5.0
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def http_config(listen_port: int, clusters: dict[str, tuple[str, list[int]]]) -> str:
    """A TOML config: one HTTP listener; per cluster id, (hostname, backend ports)."""
    lines = ["[[listeners]]", 'protocol = "http"', f'address = "127.0.0.1:{listen_port}"', ""]
    for cluster_id, (hostname, ports) in clusters.items():
        lines += [f"[clusters.{cluster_id}]", 'protocol = "http"']
        lines.append(
            f'frontends = [{{ address = "127.0.0.1:{listen_port}", hostname = "{hostname}" }}]'
        )
        entries = ", ".join(
            f'{{ address = "127.0.0.1:{port}", backend_id = "{cluster_id}-{n}" }}'
            for n, port in enumerate(ports, start=1)
        )
        lines += [f"backends = [{entries}]", ""]
    return "\n".join(lines)


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stop_successors(directory: Path) -> None:
    """Stop what still runs in a test's directory: a main started by `upgrade` (the first
    main exits, its successor is nobody's child) and the workers it spawned."""
    target = str(directory)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "cwd") in (target, target + " (deleted)"):
                pids.append(int(entry.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10.0
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


class Backends:
    """Tiny keep-alive HTTP servers answering their own id (dataplane.main.demo)."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, body: str, port: int | None = None) -> int:
        port = port or free_port()
        process = subprocess.Popen(
            [PYTHON, "-m", "dataplane.main.demo", "--address", f"127.0.0.1:{port}", "--body", body]
        )
        self.processes.append(process)
        wait_for_port(port)
        return port

    def stop_all(self) -> None:
        for process in self.processes:
            _stop(process)


@dataclass
class Pysozu:
    directory: Path
    config_path: Path
    socket_path: str
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "dataplane", "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.directory,
        )

    def request(self, request: Request, timeout: float = 15.0) -> Response:
        with CommandClient(self.socket_path, timeout, 10_000_000) as client:
            return client.request(request)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[object]:
        response = self.request(Request.of(status=Empty()))
        assert response.content is not None
        return list(response.content.value.vec)

    def wait_ready(self, workers: int | None = None, timeout: float = START_TIMEOUT) -> None:
        """Until the socket answers `status` and `workers` workers are RUNNING."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pysozu exited ({self.process.returncode}):\n{self.log()}")
            try:
                response = self.request(Request.of(status=Empty()), timeout=5.0)
            except CommandError as error:
                last = str(error)
            else:
                infos = response.content.value.vec if response.content else []
                running = [i for i in infos if i.run_state == RunState.RUNNING]
                if response.status == ResponseStatus.OK and (
                    workers is None or len(running) >= workers
                ):
                    return
                last = f"{len(running)} workers running"
            time.sleep(0.05)
        raise TimeoutError(f"pysozu not ready after {timeout} s ({last}):\n{self.log()}")

    def stop(self) -> int:
        _stop(self.process, grace=10.0)
        return int(self.process.returncode)


class PysozuFactory:
    """The `pysozu` fixture; it also carries the helpers, so tests import nothing from here."""

    free_port = staticmethod(free_port)
    wait_for_port = staticmethod(wait_for_port)
    http_get = staticmethod(http_get)
    http_config = staticmethod(http_config)

    def __init__(self) -> None:
        self.instances: list[Pysozu] = []
        self.directories: list[str] = []

    def write_config(self, toml: str, directory: Path | None = None) -> tuple[Path, str]:
        """A config file with a short-path command socket prepended (unix paths are short)."""
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="pz"))
            self.directories.append(str(directory))
        socket_path = str(directory / "sozu.sock")
        head = f'command_socket = "{socket_path}"\n'
        if "worker_count" not in toml:
            head += "worker_count = 2\n"
        config_path = directory / "config.toml"
        config_path.write_text(head + toml)
        return config_path, socket_path

    def start(
        self,
        toml: str,
        workers: int | None = 2,
        directory: Path | None = None,
        wait: bool = True,
        args: Sequence[str] = (),
    ) -> Pysozu:
        config_path, socket_path = self.write_config(toml, directory)
        return self.start_file(config_path, socket_path, workers, wait, args)

    def start_file(
        self,
        config_path: Path,
        socket_path: str,
        workers: int | None = 2,
        wait: bool = True,
        args: Sequence[str] = (),
        launcher: Sequence[str] = (),
        python_flags: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Pysozu:
        """`[launcher...] pysozu start -c config_path [args...]` (args: more command-line
        flags; launcher: a command main runs under, such as a stand-in for a container init;
        python_flags, env, cwd: how its Python runs, by default in the config's directory)."""
        directory = config_path.parent
        log_path = directory / f"pysozu-{len(self.instances)}.log"
        command = [PYTHON, *python_flags, "-m", "dataplane", "start", "-c", str(config_path)]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*launcher, *command, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd or directory,
                env=env,
            )
        instance = Pysozu(directory, config_path, socket_path, process, log_path)
        self.instances.append(instance)
        if wait:
            instance.wait_ready(workers)
        return instance

    def stop_all(self) -> None:
        for instance in self.instances:
            _stop(instance.process, grace=10.0)
        for instance in self.instances:
            _stop_successors(instance.directory)
        for directory in self.directories:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def backends() -> Iterator[Backends]:
    started = Backends()
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def pysozu() -> Iterator[PysozuFactory]:
    factory = PysozuFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


os.environ.pop("SOZU_CONFIG", None)  # tests always say which config they mean
