"""Ports for test servers: below the kernel's ephemeral range, each handed out once per run.

Shared by the integration and e2e fixtures (their conftest files put this folder on sys.path).
"""

from __future__ import annotations

import random
import socket


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing is bound to, below the kernel's ephemeral range and never handed out
    before in this run. A port from bind(0) is an ephemeral one: between this call and the
    server binding it, an outgoing connection could take it as its source port (a test saw
    "Address already in use" for a port handed out this way)."""
    low = min(20000, _EPHEMERAL_LOW // 2)
    for _ in range(1000):
        port = random.randrange(low, _EPHEMERAL_LOW)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")
