"""The command socket: a unix stream socket at `command_socket`, mode 0600.

A socket file left behind by a crashed main (nobody answers a connect) is replaced; a socket on
which a live process answers is never taken over.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from dataplane.main.errors import CommandSocketInUse, MainError

BACKLOG = 128


def _is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()


class CommandSocket:
    """The bound, listening command socket; removes its file on close if still ours."""

    def __init__(self, path: str, sock: socket.socket | None = None) -> None:
        self.path = path
        self.sock = _bind(path) if sock is None else sock
        self._inode = os.lstat(path).st_ino

    @classmethod
    def adopt(cls, path: str, fd: int) -> CommandSocket:
        """The socket a previous main bound (upgrade): same file, same accept queue."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        try:
            return cls(path, sock)
        except OSError as error:
            sock.close()
            raise MainError(f"command socket {path} vanished during the upgrade: {error}") from None

    def release(self) -> None:
        """Close our descriptor only: the next main serves the same socket file."""
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)


def _bind(path: str) -> socket.socket:
    """Bind and listen (non-blocking); raise `CommandSocketInUse` / `MainError`."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    except OSError as error:
        raise MainError(f"cannot inspect command socket {path}: {error.strerror}") from None
    else:
        if not stat.S_ISSOCK(mode):
            raise MainError(f"command socket path {path} exists and is not a socket")
        if _is_live(path):
            raise CommandSocketInUse(
                f"another pysozu is running on command socket {path} (stop it first, "
                "or set a different command_socket)"
            )
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # umask-independent: the socket is never reachable with wider rights than 0600.
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        hint = " (path too long for a unix socket)" if error.errno == errno.EINVAL else ""
        raise MainError(
            f"cannot bind command socket {path}: {error.strerror or error}{hint}"
        ) from None
    sock.setblocking(False)
    return sock
