"""Starting one worker process, exactly as LIFECYCLE.md (command) describes.

fork + exec happen in C (`subprocess` with `pass_fds`): no Python runs in the child before
exec. The executable is `/proc/self/exe` opened `O_PATH` and exec'd as `/proc/self/fd/N`, so
a worker restarted after the interpreter was replaced on disk still runs the original inode;
argv[0] stays `sys.executable` so the child keeps the virtual environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dataplane
from dataplane.command.channel import Channel, ChannelError
from dataplane.command.messages import Empty, Request, ServerConfig, WorkerRequest
from dataplane.command.responses import WorkerResponse
from dataplane.command.scm import Listeners, ScmError, send_listeners
from dataplane.command.statefile import encode_state
from dataplane.main.errors import SpawnError

log = logging.getLogger("pysozu.main.spawn")

SCM_SEND_TIMEOUT = 2.0


@dataclass
class SpawnedProcess:
    process: subprocess.Popen[bytes]
    channel: Channel[WorkerResponse]
    scm: socket.socket


def initial_status_id(worker_id: int) -> str:
    return f"INITIAL-STATUS-{worker_id}"


def _executable() -> tuple[str, int | None]:
    """`/proc/self/fd/N` for an O_PATH descriptor of our own binary, or the path as fallback."""
    try:
        fd = os.open("/proc/self/exe", os.O_PATH | os.O_CLOEXEC)
    except OSError as error:
        log.error(
            "could not open /proc/self/exe O_PATH (%s); falling back to exec by path %s, which "
            "races with a replacement of the interpreter on disk",
            error,
            sys.executable,
        )
        return sys.executable, None
    return f"/proc/self/fd/{fd}", fd


def python_command() -> list[str]:
    """How main runs pysozu in a child (a worker, or the next main of an upgrade): this
    interpreter, importing the `dataplane` main imported. With `-P`, so that a module in the
    directory main was started in (a `socket.py`, a checkout's `dataplane/` beside a compiled
    build on PYTHONPATH) never shadows the one main runs; without it only when main found
    `dataplane` in that directory itself (a source checkout run with `python -m dataplane`)."""
    root = Path(dataplane.__file__).resolve().parent.parent
    try:
        from_cwd = root == Path.cwd().resolve()
    except OSError:  # the directory was removed since main started: nothing in it to import
        from_cwd = False
    return [sys.executable, *([] if from_cwd else ["-P"]), "-m", "dataplane"]


def worker_environment() -> dict[str, str]:
    """A worker's environment: main's, with glibc's allocator for Python's small objects
    unless PYTHONMALLOC is set already, so that memory comes back after a burst of
    connections (dataplane/proxy/worker/heap.py says why and what it costs), and
    `PYSOZU_HEALTH_PROBER=main`."""
    environment = dict(os.environ)
    environment.setdefault("PYTHONMALLOC", "malloc")
    # The worker starts without probing: main names the one health prober (main/prober.py;
    # read by proxy/worker/boot.py, HEALTH_PROBER_ENV).
    environment["PYSOZU_HEALTH_PROBER"] = "main"
    return environment


def worker_argv(
    worker_id: int, channel_fd: int, scm_fd: int, state_fd: int, server_config: ServerConfig
) -> list[str]:
    return [
        *python_command(),
        "worker",
        "--id",
        str(worker_id),
        "--fd",
        str(channel_fd),
        "--scm",
        str(scm_fd),
        "--configuration-state-fd",
        str(state_fd),
        "--command-buffer-size",
        str(server_config.command_buffer_size),
        "--max-command-buffer-size",
        str(server_config.max_command_buffer_size),
    ]


def spawn_worker(
    worker_id: int,
    server_config: ServerConfig,
    state_requests: Sequence[Request],
    listeners: Listeners,
) -> SpawnedProcess:
    """Start a worker with the given state and listening sockets; raise `SpawnError`."""
    main_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    main_scm, worker_scm = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    exec_path, exe_fd = _executable()
    try:
        with tempfile.TemporaryFile() as state_file:
            state_file.write(encode_state(list(state_requests)))
            state_file.flush()
            state_file.seek(0)
            argv = worker_argv(
                worker_id,
                worker_end.fileno(),
                worker_scm.fileno(),
                state_file.fileno(),
                server_config,
            )
            # The O_PATH descriptor must survive until execve resolves /proc/self/fd/N, and
            # subprocess closes every descriptor not listed here: the worker inherits it.
            keep = [worker_end.fileno(), worker_scm.fileno(), state_file.fileno()]
            if exe_fd is not None:
                keep.append(exe_fd)
            try:
                process = subprocess.Popen(
                    argv,
                    executable=exec_path,
                    env=worker_environment(),
                    pass_fds=keep,
                    close_fds=True,
                    # Ctrl-C in a terminal signals the whole foreground group: only main must
                    # see it, and then it stops its workers itself.
                    process_group=0,
                )
            except OSError as error:
                raise SpawnError(f"could not start worker {worker_id}: {error}") from None
    except (OSError, SpawnError) as error:
        main_end.close()
        main_scm.close()
        if isinstance(error, SpawnError):
            raise
        raise SpawnError(f"could not prepare worker {worker_id}'s state: {error}") from None
    finally:
        worker_end.close()
        worker_scm.close()
        if exe_fd is not None:
            os.close(exe_fd)
    channel: Channel[WorkerResponse] = Channel(
        main_end,
        WorkerResponse,
        server_config.command_buffer_size,
        server_config.max_command_buffer_size,
    )
    try:
        main_end.settimeout(SCM_SEND_TIMEOUT)
        channel.send(server_config)
        channel.send(
            WorkerRequest(id=initial_status_id(worker_id), content=Request.of(status=Empty()))
        )
        main_scm.settimeout(SCM_SEND_TIMEOUT)
        send_listeners(main_scm, listeners)
    except (ChannelError, ScmError, OSError) as error:
        with contextlib.suppress(OSError):
            process.kill()
        channel.close()
        main_scm.close()
        raise SpawnError(
            f"could not hand its configuration to worker {worker_id}: {error}"
        ) from None
    main_end.setblocking(False)
    return SpawnedProcess(process=process, channel=channel, scm=main_scm)
