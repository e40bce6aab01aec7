"""The worker's access log: which requests are logged, what their lines say, when they are
written. Sessions and the loop are stand-ins; a request's end (`HttpSession._record`), the
batches (worker/request_ends.py), formatting and queueing are the real ones."""

from __future__ import annotations

import inspect
import json
import logging
import random
from types import SimpleNamespace
from typing import Any

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.log_targets import Target
from dataplane.command.messages import AccessLogFormat, ServerConfig
from dataplane.proxy.balancing.backend import Backend
from dataplane.proxy.http1.head import RequestParser
from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import EXCHANGE
from dataplane.proxy.observability.access_log import AccessLog
from dataplane.proxy.observability.access_log_format import formatter_for
from dataplane.proxy.observability.metrics import MetricsRegistry
from dataplane.proxy.worker.access_logs import WorkerAccessLogs, coloured
from dataplane.proxy.worker.request_ends import SETTLE_EVERY, RequestEnds


class Collect(Target):
    """Keeps what is written; counts the writes."""

    def __init__(self) -> None:
        super().__init__("collect")
        self.written: list[bytes] = []
        self.reopened = 0

    def fileno(self) -> int:
        return 99

    def write(self, data: bytes) -> int:
        self.written.append(bytes(data))
        return len(data)

    def reopen(self) -> None:
        self.reopened += 1

    def close(self) -> None:
        pass

    def lines(self) -> list[str]:
        return b"".join(self.written).decode().splitlines()


class Clock:
    def __init__(self) -> None:
        self.nanos = 1_764_216_000_000_000_000
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        self.nanos += 1000
        return self.nanos


def worker_logs(log_format: AccessLogFormat = AccessLogFormat.ASCII) -> Any:
    loop = SimpleNamespace(
        now=100.0,
        metrics=MetricsRegistry(),
        metrics_enabled=True,
        access_log=None,
        error_access_log=None,
        access_logs=None,
        ended=None,
    )
    loop.request_ends = RequestEnds(loop)  # type: ignore[arg-type]
    clock = Clock()
    target = Collect()
    logs = WorkerAccessLogs(loop, AccessLog(target, formatter_for(log_format, "WRK-01", 7, clock)))  # type: ignore[arg-type]
    loop.access_logs = logs
    logs.follow_level(logging.INFO)
    return loop, logs, target, clock


def end(
    loop: Any, s: Any, status: int, reached_backend: bool = True, message: str | None = None
) -> None:
    """A request of `s` ends, as the session records it."""
    if not inspect.isfunction(HttpSession._record):
        # Compiled by mypyc (scripts/test-compiled), a method refuses a stand-in `self`: the
        # compiled session's access log lines are tested end to end in tests/integration.
        pytest.skip("HttpSession is compiled: its methods take no stand-in session")
    s.loop = loop
    s.conn_limiter = None  # no connection limit held
    HttpSession._record(s, status, reached_backend, message)


def turn(loop: Any) -> None:
    """What the loop does after each turn of events."""
    if loop.ended and loop.request_ends.due(loop.now):
        loop.request_ends.settle()
    if loop.now >= loop.access_logs.due_at:
        loop.access_logs.turn()


def close(loop: Any) -> None:
    """What the loop does when the worker stops."""
    loop.request_ends.settle()
    loop.access_logs.close()


def session(path: bytes = b"/", agent: bytes = b"curl/8") -> Any:
    head = RequestParser().parse(
        b"GET " + path + b" HTTP/1.1\r\nHost: example.com\r\nUser-Agent: " + agent + b"\r\n\r\n"
    )
    backend = Backend("app-0", SocketAddress.parse("127.0.0.1:9000"), rng=random.Random(1))
    return SimpleNamespace(
        request=head,
        response=object(),
        routed=SimpleNamespace(cluster_id="app"),
        backend_id="app-0",
        back=SimpleNamespace(backend=backend),
        h2=None,
        host="example.com",
        context=SimpleNamespace(
            client_address="127.0.0.1:5555", x_proto=b"\r\nX-Forwarded-Proto: http"
        ),
        request_id=b"01ABC",
        request_started=99.998,
        response_started=99.999,
        bytes_in=80,
        bytes_out=300,
        log_parts=None,
        phase=EXCHANGE,
    )


def test_access_logs_follow_the_log_level() -> None:
    loop, logs, _, _ = worker_logs()
    logs.follow_level(logging.INFO)
    assert loop.access_log is logs and loop.error_access_log is logs
    logs.follow_level(logging.WARNING)
    assert loop.access_log is None and loop.error_access_log is logs
    logs.follow_level(logging.CRITICAL)
    assert loop.access_log is None and loop.error_access_log is None
    assert loop.ended is not None  # the metrics still want request ends ...
    loop.metrics_enabled = False
    loop.request_ends.follow()
    assert loop.ended is None  # ... and now nobody does: a request's end costs nothing
    end(loop, session(), 200)
    logs.follow_level(logging.INFO)
    assert loop.ended == []


def test_a_line_says_what_the_session_did() -> None:
    loop, _, target, _ = worker_logs()
    s = session(agent=b"curl/8 [x]")
    end(loop, s, 200)
    close(loop)
    (line,) = target.lines()
    assert line.split("\t")[0].endswith(" 7 INFO-ACCESS  WRK-01")
    assert line.split("\t")[1] == (
        f"[{id(s):X} 01ABC app app-0] 127.0.0.1:5555 127.0.0.1:9000 2000μs/1000μs/1000μs/-/- "
        "80 300 [user-agent=curl/8_{x}] None http example.com GET / 200"
    )


def test_the_protocol_column_is_sozus_http_or_https() -> None:
    """sozu's mux writes "http" or "https" (the listener's), for HTTP/1.1 and HTTP/2 alike;
    a request carried on an h2c stream (phase H2) logs that stream's backend."""
    loop, _, target, _ = worker_logs()
    s = session()
    s.context.x_proto = b"\r\nX-Forwarded-Proto: https"
    s.h2, s.back = s.back, None
    end(loop, s, 200)
    close(loop)
    (line,) = target.lines()
    assert " 127.0.0.1:9000 " in line
    assert line.endswith(" None https example.com GET / 200")


def test_no_backend_answer_is_an_error_line_without_response_time() -> None:
    loop, _, target, _ = worker_logs()
    s = session()
    s.response = None
    end(loop, s, 0, message="closed before the response was complete")
    end(loop, session(), 404, reached_backend=False)
    close(loop)
    failed, not_found = target.lines()
    assert "ERROR-ACCESS WRK-01" in failed
    assert " 127.0.0.1:9000 2000μs/2000μs/-/-/- 80 300 " in failed
    assert failed.endswith(" GET / - | closed before the response was complete")
    assert " app -] 127.0.0.1:5555 - 2000μs/2000μs/-/-/- " in not_found
    assert not_found.endswith(" 404")


def test_failures_only_at_the_error_level() -> None:
    loop, logs, target, _ = worker_logs()
    logs.follow_level(logging.WARNING)
    end(loop, session(), 200)
    end(loop, session(), 0, message="backend_timeout")
    close(loop)
    (line,) = target.lines()
    assert "ERROR-ACCESS" in line and line.endswith(" | backend_timeout")
    assert sum(loop.metrics.cluster("app").status) == 2  # counted all the same


def test_the_metrics_count_every_request_of_a_batch() -> None:
    loop, _, _, _ = worker_logs()
    for status in (200, 200, 503):
        end(loop, session(), status)
    end(loop, session(), 404, reached_backend=False)
    assert sum(loop.metrics.cluster("app").status) == 0  # not yet: they wait for the batch
    loop.request_ends.settle()  # (the loop also settles before it handles a command)
    figures = loop.metrics.cluster("app")
    assert figures.status[2] == 2 and figures.status[5] == 1 and figures.status[4] == 1
    backend = figures.backends["app-0"]
    assert sum(backend.status) == 3 and backend.bytes_out == 900
    assert sum(backend.backend_time.counts) == 3
    assert abs(backend.backend_time.sum - 0.003) < 1e-9  # 1 ms each, from the request start
    assert sum(figures.request_time.counts) == 4


def test_keep_alive_requests_share_their_parts_until_the_route_changes() -> None:
    loop, _, target, _ = worker_logs()
    s = session()

    def request_ends() -> None:
        end(loop, s, 200)
        loop.now += 1.0
        turn(loop)  # a batch per request here

    request_ends()
    parts = s.log_parts
    s.request_id = b"01ABD"
    request_ends()
    assert s.log_parts is parts  # same request head, cluster and backend: nothing re-made
    s.request = RequestParser().parse(b"GET /other HTTP/1.1\r\nHost: example.com\r\n\r\n")
    request_ends()
    assert s.log_parts is not parts
    first, second, third = target.lines()
    assert " 01ABC app " in first and " 01ABD app " in second
    assert third.endswith("[] None http example.com GET /other 200")


def test_a_line_is_stamped_with_the_loop_time_its_request_ended() -> None:
    loop, _, target, clock = worker_logs()
    for _ in range(3):
        end(loop, session(), 200)
    loop.now += 0.25
    end(loop, session(), 200)
    close(loop)
    assert clock.reads == 1  # once per batch, to relate the loop's clock to the wall clock
    stamps = [line.split(" ")[1] for line in target.lines()]
    assert stamps[0] == stamps[2]
    assert int(stamps[3]) - int(stamps[2]) == 250_000_000  # the loop's clock, in ns


def test_lines_are_made_and_written_in_batches_not_per_request() -> None:
    loop, _, target, _ = worker_logs()
    end(loop, session(), 200)
    turn(loop)
    assert len(target.written) == 1  # the first line after a quiet time goes at once
    for _ in range(5):
        loop.now += 0.01
        end(loop, session(), 200)
        turn(loop)
    assert target.written and len(target.written) == 1  # gathered ...
    assert len(loop.ended) == 5  # (not even formatted yet)
    loop.now += 0.1
    turn(loop)
    assert len(target.written) == 2  # ... and written together, a tenth of a second later
    assert len(target.lines()) == 6
    for _ in range(1024):  # ... or as soon as 64 KiB of lines wait
        end(loop, session(), 200)
    turn(loop)
    assert len(target.written) == 3 and len(target.lines()) == 6 + 1024


def test_a_stuck_target_drops_and_counts_instead_of_growing() -> None:
    loop, logs, target, _ = worker_logs()
    logs.log.blocked = True  # the target said "full": nothing is written
    for _ in range(10_000):
        end(loop, session(), 200)
        loop.now += 0.001
        turn(loop)
    loop.request_ends.settle()
    assert target.written == []
    assert logs.log.queued_bytes <= logs.log.max_queued_bytes
    assert logs.log.dropped > 0
    queued = sum(chunk.count(b"\n") for chunk in logs.log.queue)
    assert logs.log.dropped + queued == 10_000


def test_json_lines_parse_back_with_every_field() -> None:
    loop, _, target, _ = worker_logs(AccessLogFormat.JSON)
    end(loop, session(path=b'/q?a="b"'), 200)
    failed = session()
    failed.response = None
    end(loop, failed, 0, message="backend_timeout")
    close(loop)
    ok, timeout = (json.loads(line) for line in target.lines())
    assert ok["path"] == '/q?a="b"' and ok["user_agent"] == "curl/8"
    assert (ok["cluster_id"], ok["backend_id"], ok["backend_address"]) == (
        "app",
        "app-0",
        "127.0.0.1:9000",
    )
    assert ok["request_time"] == 0.002 and ok["response_time"] == 0.001
    assert ok["status"] == 200 and ok["error"] is False and ok["tag"] == "WRK-01"
    assert timeout["status"] is None and timeout["response_time"] is None
    assert timeout["error"] is True and timeout["message"] == "backend_timeout"


def test_the_loop_is_told_when_to_call_next() -> None:
    loop, logs, _, _ = worker_logs()
    ends = loop.request_ends
    assert logs.due_at == float("inf") and not ends.due(loop.now)  # nothing to do
    end(loop, session(), 200)
    assert ends.due(loop.now)  # the first request after a quiet time: at once
    turn(loop)
    assert logs.due_at == float("inf") and not ends.due(loop.now)  # written
    end(loop, session(), 200)
    assert not ends.due(loop.now) and ends.due(loop.now + 0.1)  # with the next batch
    for _ in range(SETTLE_EVERY - 2):
        end(loop, session(), 200)
    assert not ends.due(loop.now)
    end(loop, session(), 200)
    assert ends.due(loop.now)  # a batch's worth of requests wait: now
    turn(loop)
    assert logs.due_at == loop.now + 0.1  # their lines wait for the write


def test_reopen_after_logrotate_keeps_what_waits() -> None:
    loop, logs, target, _ = worker_logs()
    end(loop, session(), 200)
    turn(loop)  # written
    end(loop, session(), 200)
    loop.request_ends.settle()  # formatted, not written yet
    logs.reopen()  # the loop calls it at its next tick after SIGUSR1 (worker/loop.py)
    assert target.reopened == 1
    loop.now += 0.1
    turn(loop)
    assert len(target.lines()) == 2  # the line made before the reopen is not lost


def test_a_failing_batch_is_logged_and_the_next_one_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, _, target, _ = worker_logs()
    broken = session()
    broken.bytes_in = "not a number"  # what a bug would hand over
    end(loop, broken, 200)
    with caplog.at_level(logging.ERROR):
        loop.request_ends.settle()  # raised inside: must not reach the loop
    assert "1 ended requests could not be counted or logged" in caplog.text
    assert loop.ended == []
    end(loop, session(), 200)
    close(loop)
    assert len(target.lines()) == 1


def test_access_log_colours_follow_sozus_rule() -> None:
    """Colours on stdout (or stderr) only; access_logs_colored, else log_colored, decides."""
    assert coloured(ServerConfig(log_colored=True))
    assert not coloured(ServerConfig(log_colored=True, access_logs_colored=False))
    assert coloured(ServerConfig(access_logs_colored=True))
    assert not coloured(ServerConfig(log_colored=True, access_logs_target="file:///x.log"))
    assert not coloured(ServerConfig(log_colored=True, log_target="udp://127.0.0.1:9"))
    assert coloured(
        ServerConfig(log_colored=True, log_target="file:///x.log", access_logs_target="stdout")
    )
