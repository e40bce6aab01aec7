"""`upgrade_main`: main re-executes itself from the code on disk, keeping everything running.

Old main (`hand_over`): flush the worker channels, write an `UpgradeData` (JSON, as sozu) in an
anonymous temp file, and start

    python -m dataplane main --fd <confirmation socket> --upgrade-fd <that file>

with `sys.executable` by path (so a `pip install -U` takes effect), passing the command socket,
every worker's channel and SCM socket and every listening socket as inherited descriptors. It
then blocks until the new main confirms: while it waits it reads nothing, so no worker frame or
CLI client is taken by two mains. Confirmed: the old main answers OK and exits without touching
the workers. Not confirmed within `CONFIRM_TIMEOUT`: the new process is killed and the old main
carries on as if nothing happened (FAILURE).

New main (`take_over`): rebuild the state, adopt the sockets and workers, write the pid file,
confirm, tell systemd `MAINPID=<pid>` + `READY=1`, serve. Its process settings come from the
configuration file again (sozu carries them in UpgradeData), so they must still load.

The state the file described when the old main last read it (`file_state`: what a reload
compares the file with) travels too, so a reload after an upgrade applies the file's changes
since that read, not since the upgrade. A main too old to send it hands over without it: the
new main then takes the file as it reads it now, and says so (a change made to the file before
the upgrade and not reloaded is then not applied by the next reload).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile

import msgspec

from dataplane.command import codec
from dataplane.command.address import SocketAddress
from dataplane.command.channel import Channel
from dataplane.command.config import Config
from dataplane.command.messages import ListenerType, Request, SetBackendHealth
from dataplane.command.responses import RunState, WorkerResponse
from dataplane.command.state import ConfigState, StateError
from dataplane.main import notify
from dataplane.main.command_socket import CommandSocket
from dataplane.main.errors import MainError
from dataplane.main.figures import LifecycleFigures
from dataplane.main.listeners import ListenerSockets
from dataplane.main.prober import HealthProber
from dataplane.main.spawn import python_command
from dataplane.main.workers import WorkerPool

log = logging.getLogger("pysozu.main.upgrade")

CONFIRM_TIMEOUT = 30.0
CONFIRMED = b"ok"
# Old -> new, once systemd heard MAINPID=<new> from the main it still knows (with
# NotifyAccess=main it ignores the new main until then).
HANDED_OVER = b"go"
HANDED_OVER_TIMEOUT = 5.0


# Container inits that exit, and so end the container, when their child exits: under them the
# old main's exit after a handover would stop everything the new main just took over.
CONTAINER_INITS = ("tini", "docker-init", "dumb-init", "catatonit")


def ends_the_container(pid: int, parent_pid: int, parent_name: str) -> str | None:
    """Why the old main's exit would end its container (None: it would not)."""
    if pid == 1:
        return "main is PID 1: its exit would end the container"
    if parent_name in CONTAINER_INITS:
        return f"main runs under {parent_name} (pid {parent_pid}), which exits when main exits"
    return None


def upgrade_hazard() -> str | None:
    """`ends_the_container` for this process, with a way out for the operator."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/comm", encoding="utf-8") as comm:
            name = comm.read().strip()
    except OSError:
        name = ""
    reason = ends_the_container(os.getpid(), parent, name)
    if reason is None:
        return None
    return (
        f"{reason}, ending the container: replace the container (a rolling update) instead, "
        "or upgrade the workers alone with `upgrade --worker N`"
    )


class UpgradeError(MainError):
    """The new main could not be started or did not confirm; the old one keeps serving."""


class HandedWorker(msgspec.Struct, kw_only=True):
    id: int
    pid: int
    channel_fd: int
    scm_fd: int
    run_state: RunState
    version: str | None
    started_at: float


class HandedListener(msgspec.Struct, kw_only=True):
    proxy: ListenerType
    address: SocketAddress
    fd: int


class UpgradeData(msgspec.Struct, kw_only=True):
    command_socket_path: str
    command_socket_fd: int
    config_path: str | None
    next_worker_id: int
    workers: list[HandedWorker]
    listeners: list[HandedListener]
    state: list[Request]
    request_counts: dict[str, int]
    worker_restarts: int = 0
    main_upgrades: int = 0
    demo_backend_pids: list[int] = msgspec.field(default_factory=list)
    prometheus_address: str | None = None  # from the command line: the config has the rest
    file_state: list[Request] | None = None  # None: handed over by a main that did not keep it
    health_prober: int | None = None  # the worker running the health probes (prober.py)
    unhealthy_backends: list[SetBackendHealth] = msgspec.field(default_factory=list)

    def descriptors(self) -> list[int]:
        fds = [self.command_socket_fd]
        for worker in self.workers:
            fds += [worker.channel_fd, worker.scm_fd]
        return fds + [listener.fd for listener in self.listeners]


def main_argv(confirm_fd: int, upgrade_fd: int, buffer_size: int, max_buffer: int) -> list[str]:
    return [
        *python_command(),
        "main",
        "--fd",
        str(confirm_fd),
        "--upgrade-fd",
        str(upgrade_fd),
        "--command-buffer-size",
        str(buffer_size),
        "--max-command-buffer-size",
        str(max_buffer),
    ]


def hand_over(data: UpgradeData, buffer_size: int, max_buffer: int) -> int:
    """Start the new main and wait for its confirmation; its pid, or raise `UpgradeError`."""
    confirm, confirm_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with tempfile.TemporaryFile() as upgrade_file:
            upgrade_file.write(codec.encode(data))
            upgrade_file.flush()
            upgrade_file.seek(0)
            argv = main_argv(confirm_child.fileno(), upgrade_file.fileno(), buffer_size, max_buffer)
            try:
                process = subprocess.Popen(
                    argv,
                    pass_fds=[*data.descriptors(), confirm_child.fileno(), upgrade_file.fileno()],
                    close_fds=True,
                )
            except OSError as error:
                raise UpgradeError(f"could not start the new main process: {error}") from None
        confirm_child.close()
        confirm.settimeout(CONFIRM_TIMEOUT)
        try:
            answer = confirm.recv(len(CONFIRMED))
        except TimeoutError:
            answer = b""
            reason = f"no confirmation within {CONFIRM_TIMEOUT:g} s"
        except OSError as error:
            answer = b""
            reason = f"confirmation channel broke: {error}"
        else:
            reason = "it exited before confirming (see its log lines)"
        if answer != CONFIRMED:
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5.0)
            raise UpgradeError(f"the new main process (pid {process.pid}) failed: {reason}")
        notify.notify(f"MAINPID={process.pid}")
        with contextlib.suppress(OSError):
            confirm.sendall(HANDED_OVER)
        return process.pid
    finally:
        confirm.close()
        confirm_child.close()


def read_upgrade_data(upgrade_fd: int) -> UpgradeData:
    """The new main's first step; raise `UpgradeError`."""
    try:
        with os.fdopen(upgrade_fd, "rb") as upgrade_file:
            raw = upgrade_file.read()
        return codec.decode(raw, UpgradeData)
    except (OSError, codec.DecodeError) as error:
        raise UpgradeError(f"cannot read the upgrade data: {error}") from None


def confirm(confirm_fd: int) -> None:
    """Tell the old main we took over; wait (bounded) until it has told systemd."""
    with socket.socket(fileno=confirm_fd) as confirmation:
        confirmation.sendall(CONFIRMED)
        confirmation.settimeout(HANDED_OVER_TIMEOUT)
        with contextlib.suppress(OSError):
            confirmation.recv(len(HANDED_OVER))


def adopt_socket(fd: int) -> socket.socket:
    return socket.socket(fileno=fd)


def adopt_channel(fd: int, buffer_size: int, max_buffer: int) -> Channel[WorkerResponse]:
    return Channel(adopt_socket(fd), WorkerResponse, buffer_size, max_buffer)


def snapshot(
    pool: WorkerPool,
    sockets: ListenerSockets,
    state: ConfigState,
    command_socket: CommandSocket,
    config_path: str | None,
    figures: LifecycleFigures,
    demo_backend_pids: list[int],
    prometheus_address: str | None = None,
    file_state: ConfigState | None = None,
    prober: HealthProber | None = None,
) -> UpgradeData:
    """What the new main needs, descriptors by number (they are inherited as they are)."""
    workers = [
        HandedWorker(
            id=worker.id,
            pid=worker.pid,
            channel_fd=worker.channel.sock.fileno(),
            scm_fd=worker.scm.fileno(),
            run_state=worker.run_state,
            version=worker.version,
            started_at=worker.started_at,
        )
        for worker in pool.live()
    ]
    listeners = [
        HandedListener(proxy=proxy, address=address, fd=sock.fileno())
        for (proxy, address), sock in sockets.items()
    ]
    return UpgradeData(
        command_socket_path=command_socket.path,
        command_socket_fd=command_socket.fileno(),
        config_path=os.path.abspath(config_path) if config_path else None,
        next_worker_id=pool.next_id,
        workers=workers,
        listeners=listeners,
        state=state.generate_requests(),
        request_counts=dict(figures.request_counts),
        worker_restarts=pool.restarts,
        main_upgrades=figures.main_upgrades + 1,
        demo_backend_pids=demo_backend_pids,
        prometheus_address=prometheus_address,
        file_state=file_state.generate_requests() if file_state is not None else None,
        health_prober=prober.prober if prober is not None else None,
        unhealthy_backends=prober.handed() if prober is not None else [],
    )


def restore(
    data: UpgradeData,
    pool: WorkerPool,
    sockets: ListenerSockets,
    state: ConfigState,
    figures: LifecycleFigures,
    buffer_size: int,
    max_buffer: int,
) -> None:
    """The new main's side of `snapshot`; raise `UpgradeError`."""
    for request in data.state:
        try:
            state.dispatch(request)
        except StateError as error:
            raise UpgradeError(f"the handed-over state does not apply: {error}") from None
    for listener in data.listeners:
        sockets.adopt(listener.address, listener.proxy, adopt_socket(listener.fd))
    pool.next_id = data.next_worker_id
    pool.restarts = data.worker_restarts
    for worker in data.workers:
        pool.adopt(
            worker.id,
            worker.pid,
            adopt_channel(worker.channel_fd, buffer_size, max_buffer),
            adopt_socket(worker.scm_fd),
            worker.run_state,
            worker.version,
            worker.started_at,
        )
    figures.request_counts.update(data.request_counts)
    figures.main_upgrades = data.main_upgrades


def file_state(data: UpgradeData, config: Config) -> ConfigState:
    """The state the file described when the old main last read it (see the docstring)."""
    state = ConfigState()
    requests = data.file_state
    if requests is None:
        log.warning(
            "the previous main did not hand over the configuration it last read: the next "
            "reload applies the changes made to %s from now on",
            data.config_path or "the embedded default configuration",
        )
        requests = config.generate_requests()
    try:
        for request in requests:
            state.dispatch(request)
    except StateError as error:
        log.warning(
            "the configuration last read does not apply (%s): the next reload applies the "
            "whole file over the running state",
            error,
        )
        return ConfigState()
    return state
