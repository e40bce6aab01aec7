"""A TLS connection's descriptor passes from its handshake to its session without leaving the
epoll set (`Loop.hand_over`): no epoll_ctl DEL then ADD per connection. The worker's real
loop (its command channel and SCM socket a local socketpair that nothing uses) and its real
epoll, over a pipe."""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator

import pytest

from dataplane.command.channel import Channel
from dataplane.command.messages import ServerConfig, WorkerRequest
from dataplane.proxy.worker.loop import Loop

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT


@pytest.fixture
def loop() -> Iterator[Loop]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        made = Loop(ServerConfig(), Channel(ours, WorkerRequest), theirs)
        yield made
        made.epoll.close()


def test_a_handed_over_descriptor_stays_in_epoll_for_its_next_handler(loop: Loop) -> None:
    read, write = os.pipe()
    first: list[int] = []
    second: list[int] = []
    try:
        os.write(write, b"x")
        loop.register(read, first.append, EPOLLIN)
        loop.hand_over(read, EPOLLIN)
        assert read not in loop.handlers  # no event reaches the old handler
        loop.register(read, second.append, EPOLLIN)  # no EEXIST: it never left the set
        loop.end_hand_over(read)
        assert loop.handlers[read] == second.append
        assert loop.epoll.poll(0) == [(read, EPOLLIN)]
        # the new handler's mask, when it differs, replaces the old one
        loop.hand_over(read, EPOLLIN)
        loop.register(read, first.append, EPOLLOUT)
        loop.end_hand_over(read)
        assert loop.epoll.poll(0) == []  # a pipe's read end is never writable
        loop.modify(read, EPOLLIN)  # still registered
        assert loop.epoll.poll(0) == [(read, EPOLLIN)]
    finally:
        os.close(read)
        os.close(write)


def test_a_descriptor_nobody_took_over_leaves_the_epoll_set(loop: Loop) -> None:
    read, write = os.pipe()
    try:
        loop.register(read, [].append, EPOLLIN)
        loop.hand_over(read, EPOLLIN)
        loop.end_hand_over(read)  # refused: no session registered it
        assert read not in loop.handlers and loop.handed_fd == -1
        with pytest.raises(FileNotFoundError):
            loop.epoll.unregister(read)  # ENOENT: gone already
        loop.register(read, [].append, EPOLLIN)  # a later register is a plain one
        loop.end_hand_over(read)  # after a completed hand-over: nothing to do
        assert loop.handlers[read] is not None
        loop.unregister(read)
    finally:
        os.close(read)
        os.close(write)
