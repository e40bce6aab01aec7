"""The worker's per-connection bookkeeping at accept and close, on real sockets: a batch
accepts what the listening socket's queue holds (TCP_INFO), not until an EAGAIN exception,
and a session closed before the loop's tick is freed at once, not kept for the tick's filing."""

from __future__ import annotations

import gc
import socket
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from dataplane.command.channel import Channel
from dataplane.command.messages import ServerConfig, WorkerRequest
from dataplane.proxy.listener import accept_streams, pending
from dataplane.proxy.mux.session_fields import NOT_FILED, SOON
from dataplane.proxy.worker.loop import Loop


@contextmanager
def listening(queued: int) -> Iterator[socket.socket]:
    server = socket.socket()
    clients = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.setblocking(False)
        for _ in range(queued):
            clients.append(socket.create_connection(server.getsockname(), timeout=5))
        yield server
    finally:
        for client in clients:
            client.close()
        server.close()


def test_a_batch_takes_what_the_queue_holds() -> None:
    with listening(3) as server:
        assert pending(server, 64) == 3
        assert pending(server, 2) == 2  # never more than there is room for
        accepted = accept_streams(server, 64)
        try:
            assert len(accepted) == 3
            assert pending(server, 64) == 0
            assert accept_streams(server, 64) == []  # nothing queued: no accept at all
        finally:
            for conn, _peer in accepted:
                conn.close()


def test_a_socket_without_tcp_info_is_accepted_until_eagain() -> None:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert pending(unix, 5) == 5
        assert pending(unix, 500) == 64  # ACCEPT_BATCH
    finally:
        unix.close()


class Waiting:
    """A new session as the loop sees it between accept and the tick."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.timer_slot = SOON
        self.figures = None

    def on_timeout(self, now: float) -> None:
        raise AssertionError("never filed")


def test_a_session_closed_before_the_tick_is_freed_at_once() -> None:
    ours, theirs = socket.socketpair()
    scm, scm_peer = socket.socketpair()
    loop = Loop(ServerConfig(), Channel(ours, WorkerRequest), scm)
    try:
        session = Waiting(loop.now + 60)
        other = Waiting(loop.now + 60)
        for entry in (session, other):
            loop.file_soon(entry)  # type: ignore[arg-type]
            loop.sessions.add(entry)
        session.timer_slot = NOT_FILED  # what HttpSession.close does
        loop.session_closed(session)  # type: ignore[arg-type]
        gone = weakref.ref(session)
        del session
        gc.disable()  # freed by its count alone, with no collection's help
        try:
            assert gone() is None
        finally:
            gc.enable()
        assert loop.to_file == {other}
        loop.sessions.clear()
    finally:
        loop.close()
        for sock in (theirs, scm_peer):
            sock.close()
