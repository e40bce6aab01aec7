"""Framing over a real socketpair: hostile frames never break the channel or the process."""

import socket
import struct

import pytest

from dataplane.command.channel import (
    Channel,
    ChannelClosed,
    ChannelTimeout,
    FrameError,
    FrameTooLarge,
    frame,
)
from dataplane.command.messages import Cluster, Request
from dataplane.command.scm import Listeners, ScmError, receive_listeners, send_listeners

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_frame_counts_its_own_prefix() -> None:
    data = frame(Request.of(remove_cluster="a"))
    (length,) = struct.unpack_from("<Q", data)
    assert length == len(data)


def test_send_and_receive(pair) -> None:
    a, b = pair
    sender, receiver = Channel(a, Request), Channel(b, Request)
    request = Request.of(add_cluster=Cluster(cluster_id="app"))
    sender.send(request)
    assert receiver.receive_one(timeout=1) == request


def test_bad_frames_are_reported_and_the_channel_goes_on(pair) -> None:
    a, b = pair
    receiver = Channel(b, Request)
    a.sendall(struct.pack("<Q", 3))  # shorter than its own prefix
    a.sendall(struct.pack("<Q", 8 + 7) + b"garbage")
    a.sendall(frame({"request_type": {"NOT_A_VERB": 1}}))
    a.sendall(frame(Request.of(remove_cluster="ok")))
    first, second, third, fourth = (receiver.receive_one(timeout=1) for _ in range(4))
    assert isinstance(first, FrameError) and "below" in first.reason
    assert isinstance(second, FrameError) and "malformed" in second.reason
    assert isinstance(third, FrameError) and "NOT_A_VERB" in third.reason
    assert fourth == Request.of(remove_cluster="ok")


def test_oversized_frame_is_refused(pair) -> None:
    a, b = pair
    receiver = Channel(b, Request, buffer_size=4096, max_buffer_size=4096)
    a.sendall(struct.pack("<Q", 1 << 40))
    with pytest.raises(FrameTooLarge):
        receiver.receive_one(timeout=1)


def test_half_frame_then_close(pair) -> None:
    a, b = pair
    receiver = Channel(b, Request)
    a.sendall(frame(Request.of(remove_cluster="x"))[:10])
    a.close()
    with pytest.raises(ChannelClosed):
        receiver.receive_one(timeout=1)


def test_timeout(pair) -> None:
    _, b = pair
    with pytest.raises(ChannelTimeout):
        Channel(b, Request).receive_one(timeout=0.05)


def test_non_blocking_receive_collects_many_frames(pair) -> None:
    a, b = pair
    b.setblocking(False)
    receiver = Channel(b, Request)
    assert receiver.receive() == []
    a.sendall(b"".join(frame(Request.of(remove_cluster=str(i))) for i in range(100)))
    got: list = []
    while len(got) < 100:
        got += receiver.receive()
    assert [r.body for r in got] == [str(i) for i in range(100)]


def test_listeners_travel_with_their_addresses(pair) -> None:
    a, b = pair
    sockets = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        sockets.append(s)
    names = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    send_listeners(
        a, Listeners(http={names[0]: sockets[0]}, tcp={names[1]: sockets[1], names[2]: sockets[2]})
    )
    received = receive_listeners(b)
    assert list(received.http) == [names[0]]
    assert list(received.tcp) == names[1:]
    for name, sock in [*received.http.items(), *received.tcp.items()]:
        assert f"127.0.0.1:{sock.getsockname()[1]}" == name
    received.close()
    for s in sockets:
        s.close()


def test_inconsistent_listener_count_is_refused(pair) -> None:
    a, b = pair
    body = b'{"http":["127.0.0.1:1","127.0.0.1:2"],"tls":[],"tcp":[],"udp":[]}'
    s = socket.socket()
    socket.send_fds(a, [struct.pack("<I", len(body)) + body], [s.fileno()])
    with pytest.raises(ScmError, match="inconsistent"):
        receive_listeners(b)
    s.close()
