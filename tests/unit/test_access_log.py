"""Access logs: sozu's ASCII layout, JSON lines, and a queue that never blocks the loop."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.command.log_targets import AccessLogTargetError, Target, open_target
from dataplane.command.messages import AccessLogFormat
from dataplane.proxy.observability.access_log import AccessLog
from dataplane.proxy.observability.access_log_format import (
    AccessRecord,
    Formatter,
    duration,
    formatter_for,
)

NOW_NS = 1_764_216_000_123_456_789  # 2025-11-27T04:00:00.123456Z


def record(**changes: object) -> AccessRecord:
    fields: dict[str, object] = {
        "session_id": "S1",
        "request_id": "R1",
        "cluster_id": "api",
        "backend_id": "api-0",
        "client_address": "127.0.0.1:51234",
        "backend_address": "127.0.0.1:9000",
        "method": "GET",
        "authority": "example.com",
        "path": "/index.html",
        "status": 200,
        "request_time": 0.00213,
        "response_time": 0.00209,  # so 40 µs in the proxy itself (the service time)
        "bytes_in": 120,
        "bytes_out": 5120,
    }
    fields.update(changes)
    return AccessRecord(**fields)  # type: ignore[arg-type]


def formatter(log_format: AccessLogFormat = AccessLogFormat.ASCII) -> Formatter:
    return formatter_for(log_format, "WRK-00", 4242, clock=lambda: NOW_NS)


def test_ascii_line_in_sozu_layout() -> None:
    line = formatter().format(record(user_agent="curl/8.5 [x]", tags={"b": "2", "a": "1"}))
    expected = (
        "2025-11-27T04:00:00.123456Z 1764216000123456789 4242 INFO-ACCESS  WRK-00\t"
        "[S1 R1 api api-0] 127.0.0.1:51234 127.0.0.1:9000 2130μs/40μs/2090μs/-/- 120 5120 "
        "[a=1, b=2, user-agent=curl/8.5_{x}] None HTTP example.com GET /index.html 200\n"
    )
    assert line == expected.encode()


def test_coloured_ascii_line_has_sozus_colours_around_the_same_fields() -> None:
    made = formatter_for(AccessLogFormat.ASCII, "WRK-00", 4242, lambda: NOW_NS, coloured=True)
    line = made.format(record(tags={"a": "1"})).decode()
    expected = (
        "2025-11-27T04:00:00.123456Z \x1b[2m1764216000123456789 \x1b[;2;1m4242 "
        "\x1b[;35;1mINFO-ACCESS  \x1b[0;1mWRK-00\x1b[m\t"
        "\x1b[;1m[S1 R1 api api-0]\x1b[m 127.0.0.1:51234 127.0.0.1:9000 2130μs/40μs/2090μs/-/- "
        "120 5120 \x1b[2m[a=1] None \x1b[;1mHTTP example.com GET /index.html \x1b[32m200\x1b[m\n"
    )
    assert line == expected
    slow = made.format(record(status=503, request_time=12.5, message="backend_timeout"))
    assert slow.decode().endswith("\x1b[31m503\x1b[m | backend_timeout\n")
    failed = made.format(AccessRecord(session_id="S2")).decode()
    assert "\x1b[;35;1mERROR-ACCESS \x1b[0;1mWRK-00" in failed and " - -\x1b[m\n" in failed
    # without colours, the same fields and nothing else
    plain = formatter().format(record(tags={"a": "1"})).decode()
    assert plain == re.sub("\x1b\\[[0-9;]*m", "", expected)


def test_ascii_line_with_missing_values_and_an_error() -> None:
    empty = AccessRecord(session_id="S2", message="client_timeout")  # no status: failed
    line = formatter().format(empty).decode()
    assert line.endswith(
        "ERROR-ACCESS WRK-00\t[S2 - - -] - - 0ns/0ns/-/-/- 0 0 [] None HTTP - - - - "
        "| client_timeout\n"
    )


@pytest.mark.parametrize("request_time", [0.00213, 12.5])  # the usual line, and any other
def test_percent_signs_in_a_request_are_written_as_sent(request_time: float) -> None:
    """A connection's parts are written into %-templates: their own % must stay text."""
    line = formatter().format(
        record(path="/a%20b%s%d%%", user_agent="x%s", tags={"t%d": "%"}, request_time=request_time)
    )
    assert b"[t%d=%, user-agent=x%s] None HTTP example.com GET /a%20b%s%d%% 200\n" in line


def test_one_request_is_one_line_whatever_its_fields_hold() -> None:
    for log_format in (AccessLogFormat.ASCII, AccessLogFormat.JSON):
        line = (
            formatter(log_format)
            .format(record(path="/a\nINFO forged", user_agent="x\r\ny", message="m\nn"))
            .decode()
        )
        assert line.count("\n") == 1 and line.endswith("\n")
        assert "/a\\nINFO forged" in line


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.000000900, "900ns"),
        (0.000009999, "9999ns"),
        (0.000010, "10μs"),
        (0.009999, "9999μs"),
        (0.010, "10ms"),
        (9.999, "9999ms"),
        (10.0, "10s"),
        (125.7, "125s"),
    ],
)
def test_durations_as_sozu_prints_them(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text.encode()


@given(
    request_time=st.floats(min_value=0.0, max_value=1000.0)
    | st.floats(min_value=0.0, max_value=0.02),
    response_time=st.none()
    | st.floats(min_value=0.0, max_value=1000.0)
    | st.floats(min_value=0.0, max_value=0.02),
)
def test_lines_print_durations_as_sozu_whatever_their_range(
    request_time: float, response_time: float | None
) -> None:
    """The worker's one-loop durations (their own `%` for the usual range, 10 µs to 10 ms)
    agree with `duration`."""
    line = formatter().format(record(request_time=request_time, response_time=response_time))
    service = request_time - (response_time or 0.0)  # what the backend's time leaves
    expected = b"/".join(duration(t) for t in (request_time, service, response_time))
    assert b" %s/-/- " % expected in line


def test_json_line_is_one_object_with_every_field() -> None:
    line = formatter(AccessLogFormat.JSON).format(record(user_agent="curl", tags={"a": "1"}))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    data = json.loads(line)
    assert data["time"] == "2025-11-27T04:00:00.123456Z"
    assert data["tag"] == "WRK-00" and data["pid"] == 4242
    assert data["request_id"] == "R1" and data["client_address"] == "127.0.0.1:51234"
    assert (data["method"], data["host"], data["path"], data["status"]) == (
        "GET",
        "example.com",
        "/index.html",
        200,
    )
    assert data["request_time"] == 0.00213 and data["bytes_out"] == 5120
    assert data["cluster_id"] == "api" and data["backend_id"] == "api-0"
    assert data["tags"] == {"a": "1"} and data["user_agent"] == "curl"


def test_protobuf_format_is_accepted_and_written_as_bytes() -> None:
    protobuf = formatter(AccessLogFormat.PROTOBUF)
    data = protobuf.format(record())
    assert data[0] == len(data) - 3 and data.endswith(b"\0\0")  # length, message, 2 zeros


class FakeTarget(Target):
    """Takes at most `room` bytes per write; `fail` raises that error on the next write."""

    def __init__(self, datagram: bool = False, pollable: bool = True) -> None:
        super().__init__("fake")
        self.datagram = datagram
        self.pollable = pollable
        self.room: int | None = None
        self.fail: OSError | None = None
        self.written: list[bytes] = []
        self.reopened = 0
        self.refuse_reopen = False

    def fileno(self) -> int:
        return 99

    def write(self, data: bytes) -> int:
        if self.fail is not None:
            raise self.fail
        if self.room is not None and self.room <= 0:
            raise BlockingIOError
        taken = data if self.room is None else data[: self.room]
        if self.room is not None:
            self.room -= len(taken)
        self.written.append(bytes(taken))
        return len(taken)

    def reopen(self) -> None:
        if self.refuse_reopen:
            raise AccessLogTargetError("still down")
        self.reopened += 1
        self.fail = None

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Watches:
    """What the loop's epoll would hold: fd -> callback."""

    def __init__(self) -> None:
        self.fds: dict[int, object] = {}

    def watch(self, fd: int, callback: object) -> None:
        assert fd not in self.fds
        self.fds[fd] = callback

    def unwatch(self, fd: int) -> None:
        del self.fds[fd]


def access_log(
    target: FakeTarget, max_bytes: int = 1 << 20, watches: Watches | None = None
) -> tuple[AccessLog, Clock]:
    clock = Clock()
    watches = watches or Watches()
    log = AccessLog(
        target,
        formatter(),
        max_queued_bytes=max_bytes,
        clock=clock,
        watch=watches.watch,
        unwatch=watches.unwatch,
    )
    return log, clock


def test_lines_are_queued_then_written_in_one_write() -> None:
    target = FakeTarget()
    log, _ = access_log(target)
    for n in range(3):
        log.log(record(request_id=f"R{n}"))
    assert target.written == []
    log.flush()
    assert len(target.written) == 1 and target.written[0].count(b"\n") == 3
    assert log.queued_bytes == 0 and not log.wants_write


def test_full_target_keeps_the_rest_and_asks_for_writability() -> None:
    target = FakeTarget()
    target.room = 50
    watches = Watches()
    log, _ = access_log(target, watches=watches)
    log.log(record())
    log.log(record())
    whole = formatter().format(record()) * 2
    log.flush()
    assert log.wants_write and log.fileno() == 99
    assert watches.fds == {99: log.on_writable}
    log.flush()  # still full: watched once
    target.room = None
    log.on_writable()
    assert b"".join(target.written) == whole
    assert not log.wants_write and log.queued_bytes == 0
    assert watches.fds == {}


def test_regular_file_never_asks_for_writability() -> None:
    target = FakeTarget(pollable=False)
    target.room = 0
    log, _ = access_log(target)
    log.log(record())
    log.flush()
    assert not log.wants_write and log.queued_bytes > 0


def test_bounded_queue_drops_and_counts() -> None:
    target = FakeTarget()
    target.room = 0
    line_size = len(formatter().format(record()))
    log, _ = access_log(target, max_bytes=line_size * 2)
    for _ in range(5):
        log.log(record())
    assert log.dropped == 3 and log.queued_bytes == line_size * 2


def test_datagrams_one_line_each_and_a_bad_one_is_dropped() -> None:
    target = FakeTarget(datagram=True)
    log, _ = access_log(target)
    log.log(record(request_id="A"))
    log.log(record(request_id="B"))
    log.flush()
    assert [line.count(b"\n") for line in target.written] == [1, 1]
    target.fail = OSError(90, "Message too long")
    log.log(record())
    log.flush()
    assert log.dropped == 1 and log.queued_bytes == 0


def test_broken_target_reconnects_at_most_once_a_second() -> None:
    target = FakeTarget()
    watches = Watches()
    log, clock = access_log(target, watches=watches)
    target.room = 0
    log.log(record())
    log.flush()
    assert watches.fds  # full: waiting for room
    target.room = None
    target.fail = BrokenPipeError()
    log.on_writable()
    assert log.broken_since == 100.0 and log.queued_bytes > 0
    assert watches.fds == {}  # never left watching a descriptor about to be closed
    clock.now = 100.5
    log.flush()
    assert target.reopened == 0
    clock.now = 101.5
    log.flush()
    assert target.reopened == 1 and log.queued_bytes == 0 and len(target.written) == 1


def test_failed_reconnect_waits_again() -> None:
    target = FakeTarget()
    log, clock = access_log(target)
    target.fail = ConnectionResetError()
    target.refuse_reopen = True
    log.log(record())
    log.flush()
    clock.now = 102.0
    log.flush()
    assert log.broken_since == 102.0 and target.written == []


def test_reopen_for_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    target = open_target(f"file://{path}")
    log = AccessLog(target, formatter())
    log.log(record(request_id="before"))
    log.flush()
    os.rename(path, tmp_path / "access.log.1")
    log.reopen()
    log.log(record(request_id="after"))
    log.close()
    assert b"before" in (tmp_path / "access.log.1").read_bytes()
    assert b"after" in path.read_bytes() and b"before" not in path.read_bytes()
    assert not target.pollable  # a regular file never waits in epoll
    assert oct(path.stat().st_mode & 0o777) == oct(0o640 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    "spec", ["bogus", "file://", "unix://", "udp://nowhere", "tcp://1.2.3.4", "syslog://x"]
)
def test_bad_targets_are_refused_clearly(spec: str) -> None:
    with pytest.raises(AccessLogTargetError):
        open_target(spec)
