"""Health checks without sockets: the probe's request, its answer's judgement, thresholds."""

from __future__ import annotations

import pytest

from dataplane.proxy.health.verdict import MAX_STATUS_LINE, HttpAnswer, Verdict, http_request


def test_the_request_is_a_closing_get() -> None:
    request = http_request("/health?full=1", "10.0.0.1:8080")
    assert request.startswith(b"GET /health?full=1 HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n")
    assert b"\r\nConnection: close\r\n" in request and request.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("answer", "expected", "passed"),
    [
        (b"HTTP/1.1 200 OK\r\n", 0, True),
        (b"HTTP/1.0 204 No Content\r\n", 0, True),
        (b"HTTP/1.1 299\r\n", 0, True),
        (b"HTTP/1.1 301 Moved\r\n", 0, False),
        (b"HTTP/1.1 500 Oops\r\n", 0, False),
        (b"HTTP/1.1 200 OK\r\n", 204, False),
        (b"HTTP/1.1 204 No Content\r\n", 204, True),
        (b"HTTP/1.1 503 x\r\n", 503, True),
        (b"SSH-2.0-OpenSSH\r\n", 0, False),
        (b"HTTP/2 200\r\n", 0, False),
        (b"HTTP/1.1 2000 OK\r\n", 0, False),
    ],
)
def test_the_status_line_decides(answer: bytes, expected: int, passed: bool) -> None:
    assert HttpAnswer(expected).feed(answer) is passed


def test_an_answer_cut_anywhere_waits_for_more() -> None:
    whole = b"HTTP/1.1 200 OK\r\n"
    for cut in range(1, len(whole) - 1):
        answer = HttpAnswer()
        assert answer.feed(whole[:cut]) is None, cut
        assert answer.feed(whole[cut:]) is True


def test_garbage_fails_at_once_and_a_long_line_is_bounded() -> None:
    assert HttpAnswer().feed(b"X") is False
    answer = HttpAnswer()
    assert answer.feed(b"HTTP/1.1 200 " + b"a" * (MAX_STATUS_LINE * 2)) is False
    assert len(answer.data) == MAX_STATUS_LINE


def test_a_backend_closing_passes_only_after_a_passing_status() -> None:
    assert HttpAnswer().ended() is False
    answer = HttpAnswer()
    answer.feed(b"HTTP/1.1 200 OK\r\n")
    assert answer.ended() is True


def test_thresholds_take_consecutive_results() -> None:
    verdict = Verdict()
    assert verdict.healthy
    assert verdict.record(False, 2, 3) is None
    assert verdict.record(False, 2, 3) is None
    assert verdict.record(True, 2, 3) is None  # the streak of failures is broken
    assert verdict.record(False, 2, 3) is None
    assert verdict.record(False, 2, 3) is None
    assert verdict.record(False, 2, 3) is False  # third failure in a row: unhealthy
    assert verdict.record(False, 2, 3) is None  # already unhealthy: no new change
    assert verdict.record(True, 2, 3) is None
    assert verdict.record(True, 2, 3) is True  # second success in a row: healthy again
    assert verdict.healthy


def test_thresholds_of_one_flip_at_once() -> None:
    verdict = Verdict()
    assert verdict.record(False, 1, 1) is False
    assert verdict.record(True, 1, 1) is True
