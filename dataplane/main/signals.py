"""Signals only wake main's loop: their numbers arrive as bytes on a pipe (`set_wakeup_fd`).

SIGTERM and SIGQUIT ask for a soft stop (what Kubernetes and systemd send), SIGINT for a hard
stop (Ctrl-C), SIGHUP for a reload of the configuration file (as `pysozu reload`; systemd's
ExecReload may send it), SIGUSR1 for the workers to reopen their access log files (logrotate),
SIGCHLD says a worker or demo backend exited.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

HANDLED = (
    signal.SIGCHLD,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
)


def _wake_only(_signum: int, _frame: object) -> None:
    """The byte on the wakeup pipe does the work; the loop reads it."""


class SignalPipe:
    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, _wake_only) for signum in HANDLED}

    def fileno(self) -> int:
        return self._read_fd

    def drain(self, handle: Callable[[int], None]) -> None:
        """Call `handle(signum)` once per distinct pending signal."""
        pending: list[int] = []
        while True:
            try:
                data = os.read(self._read_fd, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            pending.extend(byte for byte in data if byte not in pending)
        for signum in pending:
            handle(signum)

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        os.close(self._read_fd)
        os.close(self._write_fd)
