"""systemd's notify protocol (`Type=notify`): one datagram per state change on $NOTIFY_SOCKET.

Main says READY=1 once its workers run, RELOADING=1 then READY=1 around every verb that changes
something, STOPPING=1 when it stops gracefully, and after an upgrade the new main says
MAINPID=<its pid> then READY=1. An address starting with `@` is an abstract socket. Without
NOTIFY_SOCKET (not under systemd) every call does nothing; a send that fails is logged once per
message kind, never raised: systemd's bookkeeping must not stop the proxy.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("pysozu.main.notify")


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def notify(*assignments: str) -> bool:
    """Send `KEY=value` lines to systemd; True when sent (False: not under systemd, or failed)."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = _address(target)
    if address is None:
        log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket", target)
        return False
    message = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as error:
        log.warning("could not notify systemd (%s): %s", " ".join(assignments), error)
        return False
    return True


def ready() -> None:
    notify("READY=1", f"STATUS=serving (main pid {os.getpid()})")


def reloading() -> None:
    notify("RELOADING=1")


def stopping() -> None:
    notify("STOPPING=1")


def new_main(pid: int) -> None:
    notify(f"MAINPID={pid}", "READY=1")
