"""Holding many idle client connections open on a proxy while it is measured."""

from __future__ import annotations

import contextlib
import errno
import resource
import selectors
import socket
import time
from collections.abc import Iterator

from harness.errors import TargetFailed


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's (and so its children's) open-file limit towards wanted; as root the
    hard limit too. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for new_soft, new_hard in ((wanted, max(wanted, hard)), (min(wanted, hard), hard)):
        if new_soft <= soft:
            break
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def idle_connections(port: int, count: int, timeout_s: float = 60.0) -> Iterator[int]:
    """Open `count` TCP connections to 127.0.0.1:port, send nothing, hold them for the block.

    Yields how many are established; fails if fewer than all within timeout_s.
    """
    sockets: list[socket.socket] = []
    pending = selectors.DefaultSelector()
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", port))
            if code not in (0, errno.EINPROGRESS):
                raise TargetFailed(f"idle connection refused: {errno.errorcode.get(code, code)}")
            pending.register(sock, selectors.EVENT_WRITE)
        established = 0
        deadline = time.monotonic() + timeout_s
        while established < count and time.monotonic() < deadline:
            for key, _ in pending.select(timeout=1.0):
                sock = key.fileobj  # type: ignore[assignment]
                pending.unregister(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    established += 1
        if established < count:
            raise TargetFailed(f"only {established} of {count} idle connections established")
        yield established
    finally:
        pending.close()
        for sock in sockets:
            sock.close()
