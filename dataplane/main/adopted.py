"""A worker process that a previous main started: the new main's handle on it after an upgrade.

The new main is not the worker's parent, so it cannot `waitpid` it and gets no SIGCHLD; it
watches a pidfd instead (readable once the process exited; immune to pid reuse once opened).
The exit status of a process we did not start is unknown: `returncode` is -1 once it is gone.
The same few methods as `subprocess.Popen`, which the worker table uses for its own children.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess

UNKNOWN_STATUS = -1


class AdoptedProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None
            self.returncode = UNKNOWN_STATUS

    def poll(self) -> int | None:
        return self._wait(0.0)

    def wait(self, timeout: float | None = None) -> int:
        status = self._wait(timeout)
        if status is None:
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
        return status

    def send_signal(self, signum: int) -> None:
        if self._pidfd is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _wait(self, timeout: float | None) -> int | None:
        if self.returncode is not None or self._pidfd is None:
            return self.returncode
        readable, _, _ = select.select([self._pidfd], [], [], timeout)
        if not readable:
            return None
        os.close(self._pidfd)
        self._pidfd = None
        self.returncode = UNKNOWN_STATUS
        return self.returncode
