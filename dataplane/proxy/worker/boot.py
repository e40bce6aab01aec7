"""Worker boot: `python -m dataplane worker ...` ends up here (see command/LIFECYCLE.md).

Order, as in sozu's `begin_worker_process`: check the three inherited descriptors, read the
ServerConfig (first frame), set up logging (`WRK-NN`), apply the initial state file, answer
main's INITIAL-STATUS, receive the listening sockets over SCM, serve the active listeners,
run the loop. Any failure before the loop is one line on stderr and exit status 1.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import stat
import sys
from typing import TYPE_CHECKING

from dataplane import build_info
from dataplane.command.channel import Channel, ChannelError, FrameError
from dataplane.command.logs import LogTargetError, setup_logging
from dataplane.command.messages import ServerConfig, WorkerRequest
from dataplane.command.responses import ResponseStatus, WorkerResponse
from dataplane.command.scm import ScmError
from dataplane.command.statefile import decode_state
from dataplane.proxy.errors import BootError
from dataplane.proxy.worker.access_logs import WorkerAccessLogs
from dataplane.proxy.worker.commands import CommandHandler
from dataplane.proxy.worker.loop import Loop

if TYPE_CHECKING:
    from dataplane.proxy.mux.host import Host

log = logging.getLogger("dataplane.worker")

MAX_STATE_FILE = 512 * 1024 * 1024
HEALTH_PROBER_ENV = "PYSOZU_HEALTH_PROBER"  # "main": main names the prober


def begin_worker_process(
    channel_fd: int,
    scm_fd: int,
    state_fd: int,
    worker_id: int,
    command_buffer_size: int,
    max_command_buffer_size: int,
) -> int:
    """Run a worker until it is stopped; the process exit status."""
    try:
        loop = _boot(
            channel_fd, scm_fd, state_fd, worker_id, command_buffer_size, max_command_buffer_size
        )
    except BootError as error:
        print(f"pysozu worker {worker_id}: {error}", file=sys.stderr)
        return 1
    gc.collect()  # what booting left unreachable, before the heap is trimmed
    # What booting made (the configuration, the routing table) leaves the collector's walk
    # until the first change of state (commands.py unfreezes): a full collection with 10,000
    # clusters visited 450,000 objects, a 300 ms pause.
    gc.freeze()
    loop.heap.trim_now()
    log.info("worker %d running (pid %d, %s)", worker_id, os.getpid(), build_info.describe())
    try:
        loop.run()
    finally:
        loop.close()
    log.info("worker %d stopped", worker_id)
    return 0


def _boot(
    channel_fd: int,
    scm_fd: int,
    state_fd: int,
    worker_id: int,
    command_buffer_size: int,
    max_command_buffer_size: int,
) -> Loop:
    _check_descriptors(channel_fd, scm_fd, state_fd)
    channel_sock = socket.socket(fileno=channel_fd)
    scm = socket.socket(fileno=scm_fd)
    channel_sock.setblocking(True)
    scm.setblocking(True)
    channel: Channel[object] = Channel(
        channel_sock, ServerConfig, command_buffer_size, max_command_buffer_size
    )
    config = _receive(channel, "the server configuration")
    assert isinstance(config, ServerConfig)
    _setup_logging(config, worker_id)
    channel.receive_type = WorkerRequest  # every later frame; bytes already read are kept
    loop = Loop(config, channel, scm)  # type: ignore[arg-type]
    # Main names the one worker that probes (health/checks.py); a worker started by a main
    # that does not (an older one, before its upgrade) probes as before.
    loop.health.active = os.environ.get(HEALTH_PROBER_ENV) != "main"
    signal.signal(signal.SIGUSR1, loop.on_sigusr1)  # its default action would kill us
    loop.access_logs = WorkerAccessLogs.open(loop, config, worker_id)
    commands = CommandHandler(loop, worker_id)
    loop.on_message = commands.handle
    _apply_state_file(state_fd, commands)
    status = _receive(channel, "the initial status request")
    assert isinstance(status, WorkerRequest)
    if status.content.verb != "status":
        raise BootError(f"expected a status request, got {status.content.verb}")
    loop.send(WorkerResponse(id=status.id, status=ResponseStatus.OK))
    try:
        loop.receive_scm()
    except ScmError as error:
        raise BootError(f"cannot receive listening sockets: {error}") from None
    state = loop.state
    served = [address for address, config in state.http_listeners.items() if config.active]
    served += [address for address, config in state.https_listeners.items() if config.active]
    served += [address for address, config in state.tcp_listeners.items() if config.active]
    for address in served:
        try:
            loop.activate(address)
        except OSError as error:
            raise BootError(f"cannot listen on {address}: {error.strerror}") from None
        except ScmError as error:  # its settings were refused above (logged): serve the rest
            log.error("listener %s is not served: %s", address, error)
    for address in [a for a, config in state.udp_listeners.items() if config.active]:
        try:
            loop.activate_udp(address)
        except (OSError, ScmError) as error:
            log.error("UDP listener %s is not served: %s", address, error)
    channel_sock.setblocking(False)
    return loop


if TYPE_CHECKING:

    def _host_of(loop: Loop) -> Host:
        """The loop is its connections' host: here the type checker holds `Loop` to `Host`."""
        return loop


def _check_descriptors(channel_fd: int, scm_fd: int, state_fd: int) -> None:
    if len({channel_fd, scm_fd, state_fd}) != 3:
        raise BootError("--fd, --scm and --configuration-state-fd must be distinct descriptors")
    for name, fd, want_socket in (
        ("--fd", channel_fd, True),
        ("--scm", scm_fd, True),
        ("--configuration-state-fd", state_fd, False),
    ):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            raise BootError(f"{name} {fd} is not an open file descriptor") from None
        if want_socket and not stat.S_ISSOCK(mode):
            raise BootError(f"{name} {fd} is not a unix socket")
        if not want_socket and not stat.S_ISREG(mode):
            raise BootError(f"{name} {fd} is not a regular file")
    for name, fd in (("--fd", channel_fd), ("--scm", scm_fd)):
        family = socket.socket(fileno=os.dup(fd))
        try:
            if family.family != socket.AF_UNIX:
                raise BootError(f"{name} {fd} is not a unix socket")
        finally:
            family.close()


def _receive(channel: Channel[object], what: str) -> object:
    try:
        message = channel.receive_one(timeout=None)
    except ChannelError as error:
        raise BootError(f"cannot read {what} from main: {error}") from None
    if isinstance(message, FrameError):
        raise BootError(f"invalid {what} from main: {message.reason}")
    return message


def _apply_state_file(state_fd: int, commands: CommandHandler) -> None:
    with os.fdopen(state_fd, "rb") as file:
        data = file.read(MAX_STATE_FILE + 1)
    if len(data) > MAX_STATE_FILE:
        raise BootError("the initial state file is too large")
    requests, errors = decode_state(data)
    for error in errors:
        log.error("initial state: %s", error)
    for index, request in enumerate(requests):
        message = WorkerRequest(id=f"SAVE-{index}", content=request)
        try:
            commands.apply_state(message)
        except Exception as error:
            log.error("initial state: %s (%s) failed: %s", message.id, request.verb, error)


def _setup_logging(config: ServerConfig, worker_id: int) -> None:
    try:
        tag = f"WRK-{worker_id:02d}"
        setup_logging(config.log_target, config.log_level, tag, colored=config.log_colored)
    except LogTargetError as error:
        raise BootError(str(error)) from None
