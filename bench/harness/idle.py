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


def answered(data: bytes | bytearray) -> bool:
    """A whole response is in `data` (a head, then a Content-Length body)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return len(data) >= end + 4 + length


@contextlib.contextmanager
def idle_connections(
    port: int, count: int, timeout_s: float = 60.0, request: bytes | None = None
) -> Iterator[int]:
    """Open `count` TCP connections to 127.0.0.1:port and hold them for the block. With
    `request`, each first sends it and reads the whole answer (a kept-alive client between two
    requests); without, each sends nothing.

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
            pending.register(sock, selectors.EVENT_WRITE, bytearray())
        established = 0
        deadline = time.monotonic() + timeout_s
        while established < count and time.monotonic() < deadline:
            for key, events in pending.select(timeout=1.0):
                sock = key.fileobj  # type: ignore[assignment]
                if events & selectors.EVENT_WRITE:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                        pending.unregister(sock)
                    elif request is None:
                        pending.unregister(sock)
                        established += 1
                    else:
                        try:
                            sock.send(request)  # a few dozen bytes: one send on a new socket
                        except OSError:
                            pending.unregister(sock)  # counted as not answered
                            continue
                        pending.modify(sock, selectors.EVENT_READ, key.data)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""  # reset: counted as not answered
                key.data.extend(data)
                if not data or answered(key.data):
                    pending.unregister(sock)
                    established += bool(data)
        if established < count:
            what = "answered" if request else "established"
            raise TargetFailed(f"only {established} of {count} idle connections {what}")
        yield established
    finally:
        pending.close()
        for sock in sockets:
            sock.close()
