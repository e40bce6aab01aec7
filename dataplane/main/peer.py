"""Who is on the other end of a command connection, and whether they may send commands.

At accept, main reads the peer's credentials from the kernel (SO_PEERCRED: uid, gid, pid; they
cannot be forged by the client), its command name (`/proc/<pid>/comm`) and its account name.
They attribute every audit record of the connection (`audit_record.py`) and decide
`command_allowed_uids`, as in sozu 2.1:

- the key absent: any client that can open the socket (mode 0600: main's own uid, and root)
  may send every verb;
- a list: only those uids may send anything, queries included. No exemption: not root, not
  main's own uid (list them). An empty list refuses everybody (main then stops on signals
  only). Credentials that cannot be read count as not allowed (fail closed).
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
import time
from dataclasses import dataclass, field

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_USER_CACHE_SIZE = 16  # NSS can be slow: a steady operator uid is resolved once
_user_cache: dict[int, str | None] = {}


@dataclass(frozen=True)
class Peer:
    """A command client's identity, captured once at accept."""

    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    user: str | None = None
    comm: str | None = None
    connected_at: float = field(default_factory=time.time)


def peer_of(sock: socket.socket) -> Peer:
    """The credentials of the process that connected `sock` (fields None if unreadable)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, gid = _UCRED.unpack(raw)
    except (OSError, struct.error):
        return Peer()
    return Peer(uid=uid, gid=gid, pid=pid or None, user=user_name(uid), comm=command_name(pid))


def user_name(uid: int) -> str | None:
    if uid in _user_cache:
        return _user_cache[uid]
    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    if len(_user_cache) >= _USER_CACHE_SIZE:
        _user_cache.pop(next(iter(_user_cache)))
    _user_cache[uid] = name
    return name


def command_name(pid: int) -> str | None:
    """`/proc/<pid>/comm`, or None when the process is already gone."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as file:
            return file.read().strip() or None
    except OSError:
        return None


def refusal(allowed_uids: list[int] | None, peer: Peer) -> str | None:
    """Why `peer` may not send commands (sozu's words), or None when it may."""
    if allowed_uids is None:
        return None
    if peer.uid is not None and peer.uid in allowed_uids:
        return None
    uid = "unknown" if peer.uid is None else str(peer.uid)
    return f"unauthorized: actor UID {uid} not in command_allowed_uids"


def own_credentials() -> Peer:
    """Main's own identity, for records of what main does on its own (signals)."""
    return Peer(
        uid=os.getuid(),
        gid=os.getgid(),
        pid=os.getpid(),
        user=user_name(os.getuid()),
        comm=command_name(os.getpid()),
    )
