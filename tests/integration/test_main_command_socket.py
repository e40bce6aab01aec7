"""main's command socket: hostile frames, many clients, a live socket, signals, pid file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import weakref
from typing import Any

import pytest

from dataplane.command.channel import Channel, ChannelClosed
from dataplane.command.codec import encode
from dataplane.command.messages import Empty, Request
from dataplane.command.responses import Response, ResponseStatus

pytestmark = pytest.mark.timeout(60)


def minimal_config(pysozu: Any) -> str:
    return pysozu.http_config(pysozu.free_port(), {"app": ("example.com", [pysozu.free_port()])})


def connect(path: str) -> socket.socket:
    """A client connection; while main's accept backlog is full, retry (for 10 s at most)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:  # a unix socket's full backlog: main accepts them in turn
            if time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.01)


def frame(body: bytes) -> bytes:
    return struct.pack("<Q", 8 + len(body)) + body


_channels: weakref.WeakKeyDictionary[socket.socket, Channel[Response]] = weakref.WeakKeyDictionary()


def read_final(sock: socket.socket) -> Response:
    """The next final answer on `sock` (one channel per socket keeps what was read ahead)."""
    channel = _channels.setdefault(sock, Channel(sock, Response))
    while True:
        answer = channel.receive_one(timeout=10)
        assert isinstance(answer, Response), answer
        if answer.status != ResponseStatus.PROCESSING:
            return answer


STATUS = frame(encode(Request.of(status=Empty())))


def test_bad_frames_get_failures_and_the_connection_stays(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    sock = connect(proxy.socket_path)
    sock.sendall(struct.pack("<Q", 3))  # length below the prefix
    too_short = read_final(sock)
    assert too_short.status == ResponseStatus.FAILURE
    assert "below the 8-byte prefix" in too_short.message
    for body, expected in (
        (b"{not json", "invalid message"),
        (json.dumps({"request_type": {"TELEPORT": {}}}).encode(), "unknown verb TELEPORT"),
        (b'{"request_type": {}}', "exactly one verb"),
    ):
        sock.sendall(frame(body))
        answer = read_final(sock)
        assert answer.status == ResponseStatus.FAILURE
        assert expected in answer.message
    sock.sendall(STATUS)  # the same connection still works
    assert read_final(sock).status == ResponseStatus.OK
    sock.close()


def test_an_oversized_frame_closes_only_that_client(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    hostile = connect(proxy.socket_path)
    hostile.sendall(struct.pack("<Q", 50_000_000) + b"x" * 100)
    channel: Channel[Response] = Channel(hostile, Response)
    with pytest.raises(ChannelClosed):
        channel.receive_one(timeout=10)
    good = connect(proxy.socket_path)
    good.sendall(STATUS)
    assert read_final(good).status == ResponseStatus.OK


def test_half_frames_and_a_hundred_clients_do_not_disturb_main(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    half = connect(proxy.socket_path)
    half.sendall(STATUS[:10])
    half.close()
    crowd = [connect(proxy.socket_path) for _ in range(100)]
    for number, sock in enumerate(crowd):
        sock.sendall(STATUS if number % 2 else STATUS[: number % 7])
    answered = 0
    for number, sock in enumerate(crowd):
        if number % 2:
            answered += read_final(sock).status == ResponseStatus.OK
        sock.close()
    assert answered == 50
    latecomer = proxy.cli("status")
    assert latecomer.returncode == 0, latecomer.stderr
    assert proxy.process.poll() is None


def test_pipelined_requests_are_answered_in_order(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    sock = connect(proxy.socket_path)
    sock.sendall(STATUS + frame(encode(Request.of(remove_cluster="nope"))) + STATUS)
    assert read_final(sock).status == ResponseStatus.OK
    refused = read_final(sock)
    assert refused.status == ResponseStatus.FAILURE and "nope" in refused.message
    assert read_final(sock).status == ResponseStatus.OK


def test_the_command_socket_is_private(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    assert stat.S_IMODE(os.stat(proxy.socket_path).st_mode) == 0o600


def test_a_live_socket_is_refused_and_a_stale_one_replaced(pysozu: Any) -> None:
    first = pysozu.start(minimal_config(pysozu))
    second = subprocess.run(
        [sys.executable, "-m", "dataplane", "start", "-c", str(first.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert "another pysozu is running on command socket" in second.stdout + second.stderr
    assert first.cli("status").returncode == 0  # untouched
    assert first.stop() == 0
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(first.socket_path)  # a file nobody answers on
    stale.close()
    restarted = pysozu.start_file(first.config_path, first.socket_path)
    assert restarted.cli("status").returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_signals_stop_main_cleanly(pysozu: Any, signum: int) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    worker_pids = [info.pid for info in proxy.workers()]  # type: ignore[attr-defined]
    proxy.process.send_signal(signum)
    assert proxy.process.wait(timeout=20) == 0, proxy.log()[-4000:]
    assert not os.path.exists(proxy.socket_path)
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "Traceback" not in proxy.log()


def test_pid_file_lives_as_long_as_main(pysozu: Any) -> None:
    config, socket_path = pysozu.write_config("")
    pid_file = config.parent / "pysozu.pid"
    config.write_text(
        f'pid_file_path = "{pid_file}"\n' + config.read_text() + "\n" + minimal_config(pysozu)
    )
    proxy = pysozu.start_file(config, socket_path)
    assert int(pid_file.read_text()) == proxy.process.pid
    proxy.cli("shutdown")
    assert proxy.process.wait(timeout=20) == 0
    deadline = time.monotonic() + 5
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_file.exists()


def _stuck_crowd(path: str, count: int) -> list[socket.socket]:
    """`count` connections that each send half a `status` frame and then nothing."""
    crowd: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = connect(path)
            crowd.append(sock)
            sock.sendall(STATUS[:10])
    except BaseException:
        for sock in crowd:
            sock.close()
        raise
    return crowd


def test_eleven_hundred_half_frames_do_not_lock_status_out(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    subscriber = connect(proxy.socket_path)  # busy for ever: never cut for a newcomer
    subscriber.sendall(frame(encode(Request.of(subscribe_events=Empty()))))
    channel: Channel[Response] = Channel(subscriber, Response)
    assert channel.receive_one(timeout=10).status == ResponseStatus.PROCESSING  # type: ignore[union-attr]
    crowd = _stuck_crowd(proxy.socket_path, 1100)
    try:
        started = time.monotonic()
        answer = proxy.cli("status", timeout=20)
        elapsed = time.monotonic() - started
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert elapsed < 5, f"status took {elapsed:.1f} s"
        subscriber.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # still open, nothing to read: good
            assert subscriber.recv(1) != b"", "the subscriber was cut"
    finally:
        for sock in crowd:
            sock.close()
        subscriber.close()
    assert "command socket full (1024 clients): closing client" in proxy.log()
    assert proxy.process.poll() is None


def test_a_half_sent_frame_times_out(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    stuck = connect(proxy.socket_path)
    idle = connect(proxy.socket_path)  # connected, sends nothing: far from its idle timeout
    stuck.sendall(STATUS[:12])
    stuck.settimeout(20)
    started = time.monotonic()
    assert stuck.recv(1) == b""  # main closed it
    assert 9 < time.monotonic() - started < 15
    assert "cut: a frame left incomplete for 1" in proxy.log()  # 10 to 14 s
    assert "(12 bytes received)" in proxy.log()
    idle.sendall(STATUS)
    assert read_final(idle).status == ResponseStatus.OK
    stuck.close()
    idle.close()


def test_subscriptions_are_capped_so_they_cannot_fill_the_table(pysozu: Any) -> None:
    proxy = pysozu.start(minimal_config(pysozu))
    subscribe = frame(encode(Request.of(subscribe_events=Empty())))
    subscribers: list[socket.socket] = []
    try:
        for _ in range(512):
            sock = connect(proxy.socket_path)
            subscribers.append(sock)
            sock.sendall(subscribe)
        for sock in subscribers:  # each got its EVENTS_SUBSCRIBED frame
            answer = Channel(sock, Response).receive_one(timeout=10)
            assert isinstance(answer, Response) and answer.status == ResponseStatus.PROCESSING
        one_more = connect(proxy.socket_path)
        subscribers.append(one_more)
        one_more.sendall(subscribe)
        refused = read_final(one_more)
        assert refused.status == ResponseStatus.FAILURE
        assert "too many event subscribers (512)" in refused.message
        assert proxy.cli("status").returncode == 0
    finally:
        for sock in subscribers:
            sock.close()
