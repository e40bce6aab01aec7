"""Passing listening sockets between processes with SCM_RIGHTS.

One `sendmsg` carries a `ListenersCount` (the address of each socket, grouped by kind) and the
file descriptors in the same order: http, then tls, then tcp, then udp. The receiver checks that
the counts match the descriptors it got, and closes everything on any inconsistency.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from dataplane.command import codec
from dataplane.command.responses import ListenersCount

MAX_FDS = 200
MAX_PAYLOAD = 65536
_LEN = struct.Struct("<I")


class ScmError(Exception):
    """The listeners could not be passed; any received descriptors were closed."""


@dataclass
class Listeners:
    """Listening sockets by kind, keyed by their address string (`127.0.0.1:8080`)."""

    http: dict[str, socket.socket] = field(default_factory=dict)
    tls: dict[str, socket.socket] = field(default_factory=dict)
    tcp: dict[str, socket.socket] = field(default_factory=dict)
    udp: dict[str, socket.socket] = field(default_factory=dict)

    def groups(self) -> tuple[dict[str, socket.socket], ...]:
        return (self.http, self.tls, self.tcp, self.udp)

    def __len__(self) -> int:
        return sum(len(group) for group in self.groups())

    def close(self) -> None:
        for group in self.groups():
            for sock in group.values():
                sock.close()
            group.clear()


def send_listeners(channel: socket.socket, listeners: Listeners) -> None:
    count = ListenersCount(
        http=list(listeners.http),
        tls=list(listeners.tls),
        tcp=list(listeners.tcp),
        udp=list(listeners.udp),
    )
    fds = [sock.fileno() for group in listeners.groups() for sock in group.values()]
    if len(fds) > MAX_FDS:
        raise ScmError(f"cannot pass {len(fds)} listeners at once (limit {MAX_FDS})")
    body = codec.encode(count)
    socket.send_fds(channel, [_LEN.pack(len(body)) + body], fds)


def receive_listeners(channel: socket.socket) -> Listeners:
    """Blocking receive of one `send_listeners` message."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(channel, MAX_PAYLOAD, MAX_FDS)
    except OSError as error:
        raise ScmError(f"could not receive listeners: {error}") from None
    received = [socket.socket(fileno=fd) for fd in fds]
    try:
        if len(data) < _LEN.size:
            raise ScmError("listeners message is too short" if data else "channel closed")
        (length,) = _LEN.unpack_from(data)
        if length != len(data) - _LEN.size:
            raise ScmError("listeners message length does not match its payload")
        count = codec.decode(data[_LEN.size :], ListenersCount)
        addresses = (count.http, count.tls, count.tcp, count.udp)
        if sum(len(group) for group in addresses) != len(received):
            raise ScmError(
                f"listeners count is inconsistent: {sum(map(len, addresses))} addresses "
                f"for {len(received)} descriptors"
            )
    except (ScmError, codec.DecodeError) as error:
        for sock in received:
            sock.close()
        raise ScmError(str(error)) from None
    listeners = Listeners()
    sockets = iter(received)
    for group, names in zip(listeners.groups(), addresses, strict=True):
        for name in names:
            group[name] = next(sockets)
    return listeners
