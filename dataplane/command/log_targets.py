"""Where logs go: sozu's `log_target` and `access_logs_target` values, opened non-blocking.

Access logs (a worker's `proxy/observability/access_log.py`) and the network targets of main's
and workers' own log lines (`logs.py`) share these.

`stdout`, `file:///path`, `udp://ip:port`, `tcp://ip:port` and `unix:///path` (a unix datagram
socket, as sozu), plus `stderr` (main's log_target allows it). `write` never blocks: it raises
`BlockingIOError` when the target is full, and `pollable` says whether the descriptor can wait
in epoll for room (a regular file cannot, and never needs to). Datagram targets take one line
per `write`.

stdout and stderr are shared with main and the other workers, so their flags are never changed:
a pipe or a terminal is opened again through /proc/self/fd/N (a private, non-blocking file
description), a socket is written with MSG_DONTWAIT, a regular file is duplicated (same offset
as the others).
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable

from dataplane.command.address import SocketAddress


class AccessLogTargetError(ValueError):
    """The target cannot be parsed or opened."""


class Target(abc.ABC):
    datagram = False
    pollable = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    @abc.abstractmethod
    def fileno(self) -> int: ...

    @abc.abstractmethod
    def write(self, data: bytes) -> int:
        """Write now or raise BlockingIOError; OSError: the target is broken."""

    def reopen(self) -> None:  # noqa: B027 (stdout has nothing to reopen)
        """Close and open again (SIGUSR1 after logrotate, or after an error)."""

    @abc.abstractmethod
    def close(self) -> None: ...


class FdTarget(Target):
    """A file, a FIFO, a pipe or a terminal, written with os.write; `opener` gives the fd."""

    def __init__(self, spec: str, opener: Callable[[], int]) -> None:
        super().__init__(spec)
        self.opener = opener
        self.fd = -1
        self.reopen()

    def fileno(self) -> int:
        return self.fd

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def reopen(self) -> None:
        try:
            fd = self.opener()
        except OSError as error:
            raise AccessLogTargetError(f"cannot open {self.spec}: {error.strerror}") from None
        self.close()
        self.fd = fd
        self.pollable = not stat.S_ISREG(os.fstat(fd).st_mode)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class SocketTarget(Target):
    def __init__(
        self, spec: str, family: int, kind: int, address: object, stream: bool = False
    ) -> None:
        super().__init__(spec)
        self.family, self.kind, self.address = family, kind, address
        self.datagram = not stream
        self.sock: socket.socket | None = None
        with contextlib.suppress(AccessLogTargetError):  # nobody listens yet: retried later
            self.reopen()

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def write(self, data: bytes) -> int:
        if self.sock is None:  # "nobody listens": the log keeps its lines and reconnects
            raise ConnectionRefusedError("access log socket not connected")
        return self.sock.send(data)

    def reopen(self) -> None:
        self.close()
        sock = socket.socket(self.family, self.kind | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        error = sock.connect_ex(self.address)  # type: ignore[arg-type]
        if error not in (0, errno.EINPROGRESS):  # TCP still connecting: writable when done
            sock.close()
            raise AccessLogTargetError(f"cannot connect to {self.spec}: {os.strerror(error)}")
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class StdioSocketTarget(Target):
    """stdout/stderr is a socket (systemd, docker logging): MSG_DONTWAIT on a duplicate."""

    def __init__(self, spec: str, fd: int) -> None:
        super().__init__(spec)
        self.sock = socket.socket(fileno=os.dup(fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def write(self, data: bytes) -> int:
        return self.sock.send(data, socket.MSG_DONTWAIT)

    def close(self) -> None:
        self.sock.close()


def _opener(path: str, flags: int) -> Callable[[], int]:
    return lambda: os.open(path, flags | os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC, 0o640)


def open_target(spec: str) -> Target:
    if spec in ("stdout", "stderr"):
        fd = 1 if spec == "stdout" else 2
        mode = os.fstat(fd).st_mode
        if stat.S_ISSOCK(mode):
            return StdioSocketTarget(spec, fd)
        if stat.S_ISREG(mode):  # never blocks; share the offset of the others writing there
            return FdTarget(spec, lambda: os.dup(fd))
        return FdTarget(spec, _opener(f"/proc/self/fd/{fd}", 0))
    if spec.startswith("file://"):
        path = spec.removeprefix("file://")
        if not path:
            raise AccessLogTargetError(f"{spec!r}: no file path")
        return FdTarget(spec, _opener(path, os.O_APPEND | os.O_CREAT))
    if spec.startswith("unix://"):
        path = spec.removeprefix("unix://")
        if not path:
            raise AccessLogTargetError(f"{spec!r}: no socket path")
        return SocketTarget(spec, socket.AF_UNIX, socket.SOCK_DGRAM, path)
    for scheme, kind in (("udp://", socket.SOCK_DGRAM), ("tcp://", socket.SOCK_STREAM)):
        if spec.startswith(scheme):
            try:
                address = SocketAddress.parse(spec.removeprefix(scheme))
            except ValueError as error:
                raise AccessLogTargetError(f"{spec!r}: {error}") from None
            family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
            stream = kind == socket.SOCK_STREAM
            return SocketTarget(spec, family, kind, address.sockaddr(), stream=stream)
    raise AccessLogTargetError(
        f"unknown access log target {spec!r} (stdout, stderr, file://, udp://, tcp://, unix://)"
    )
