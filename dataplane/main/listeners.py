"""The listening sockets main holds for its workers.

Main binds a listener when it is activated, so a bind error is one clear FAILURE before any
worker is touched; every worker then gets the same socket over SCM_RIGHTS. All workers share
one accept queue: a worker that dies loses only the connections it had accepted.

No SO_REUSEPORT: main holds the one socket per address, so it buys nothing, and it would let an
unrelated process (a second pysozu) bind the same address silently and take half the
connections. SO_REUSEADDR only lets a restarted main bind over connections in TIME_WAIT.
"""

from __future__ import annotations

import socket

from dataplane.command.address import SocketAddress
from dataplane.command.messages import ListenerType
from dataplane.command.scm import Listeners
from dataplane.main.errors import ListenerBindError

ACCEPT_BACKLOG = 1024

Key = tuple[ListenerType, SocketAddress]


def bind_listener(address: SocketAddress, proxy: ListenerType) -> socket.socket:
    family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
    kind = socket.SOCK_DGRAM if proxy == ListenerType.UDP else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address.sockaddr())
        if kind == socket.SOCK_STREAM:
            sock.listen(ACCEPT_BACKLOG)
    except OSError as error:
        sock.close()
        raise ListenerBindError(
            f"could not bind {proxy.name} listener {address}: "
            f"[Errno {error.errno}] {error.strerror or error}"
        ) from None
    # Shared by every worker through SCM: the open file description, hence this flag, is one.
    sock.setblocking(False)
    return sock


class ListenerSockets:
    """Bound listening sockets by (kind, address)."""

    def __init__(self) -> None:
        self._sockets: dict[Key, socket.socket] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def __contains__(self, key: Key) -> bool:
        return key in self._sockets

    def bind(self, address: SocketAddress, proxy: ListenerType) -> socket.socket:
        """The socket for this listener, bound now if main does not hold it yet."""
        key = (proxy, address)
        sock = self._sockets.get(key)
        if sock is None:
            sock = self._sockets[key] = bind_listener(address, proxy)
        return sock

    def close(self, address: SocketAddress, proxy: ListenerType) -> None:
        sock = self._sockets.pop((proxy, address), None)
        if sock is not None:
            sock.close()

    def move(self, old: Key, new: Key) -> None:
        """The socket held for `old` now serves `new` (same address, another TCP protocol)."""
        self._sockets[new] = self._sockets.pop(old)

    def adopt(self, address: SocketAddress, proxy: ListenerType, sock: socket.socket) -> None:
        """A socket bound by a previous main (upgrade)."""
        sock.setblocking(False)
        self._sockets[(proxy, address)] = sock

    def items(self) -> list[tuple[Key, socket.socket]]:
        return list(self._sockets.items())

    def close_all(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def for_scm(self, only: Key | None = None) -> Listeners:
        """A view to send over SCM (the sockets stay owned here: never `close()` it)."""
        listeners = Listeners()
        groups = {
            ListenerType.HTTP: listeners.http,
            ListenerType.HTTPS: listeners.tls,
            ListenerType.TCP: listeners.tcp,
            ListenerType.UDP: listeners.udp,
        }
        for (proxy, address), sock in self._sockets.items():
            if only is None or only == (proxy, address):
                groups[proxy][str(address)] = sock
        return listeners
