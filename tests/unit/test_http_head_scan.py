"""The early head checks (http1/head_scan.py), fed whole, byte by byte and in random pieces.

The scanner must refuse a head at the first byte that makes it invalid, and accept exactly
the heads the full parse (`http_head._REQUEST`) accepts.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.head import _REQUEST, HEAD_END
from dataplane.proxy.http1.head_scan import HeadScanner

VALID = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST http://a/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-Empty:\r\n\r\n",
    b"M-SEARCH /%20 HTTP/1.1\r\nX: \t tab and \xff high \r\nY:z\r\n\r\n",
]

# (bytes, index of the first byte that makes the head invalid)
INVALID = [
    (bytes.fromhex("16030100c4010000c00303"), 0),  # a TLS ClientHello
    (b"\x00GET / HTTP/1.1\r\n", 0),
    (b"\r\nGET / HTTP/1.1\r\n", 0),  # an empty line before the request line
    (b" GET / HTTP/1.1\r\n", 0),
    (b"G@T / HTTP/1.1\r\n", 1),
    (b"GET  / HTTP/1.1\r\n", 4),
    (b"GET /\x00 HTTP/1.1\r\n", 5),
    (b"GET /\x7f HTTP/1.1\r\n", 5),
    (b"GET /\xff HTTP/1.1\r\n", 5),
    (b"GET /\r\nHost: a\r\n", 5),  # HTTP/0.9 shape
    (b"GET /a b HTTP/1.1\r\n", 7),
    (b"GET / HTTX/1.1\r\n", 9),
    (b"GET / HTTP/2.0\r\n", 11),
    (b"GET / HTTP/1.2\r\n", 13),
    (b"GET / HTTP/1.1 \r\n", 14),
    (b"GET / HTTP/1.1\n", 14),  # bare LF
    (b"GET / HTTP/1.1\r\r\n", 15),
    (b"GET / HTTP/1.1\r\nHo st: a\r\n", 18),
    (b"GET / HTTP/1.1\r\nHost : a\r\n", 20),
    (b"GET / HTTP/1.1\r\n: a\r\n", 16),
    (b"GET / HTTP/1.1\r\nHost a\r\n", 20),
    (b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n", 25),  # obs-fold
    (b"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n", 25),
    (b"GET / HTTP/1.1\r\nHost: a\rb\r\n", 24),  # CR without LF
    (b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n", 23),  # bare LF
    (b"GET / HTTP/1.1\r\nX: a\x00b\r\n", 20),
    (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n", 20),
    (b"GET / HTTP/1.1\r\nX: a\r\n\rX\r\n", 23),
]


def feed_in(data: bytes, cuts: list[int]) -> tuple[int, int]:
    """Feed `data` growing to each cut (the session's buffer); returns (result, bytes fed)."""
    scanner = HeadScanner()
    for cut in [*cuts, len(data)]:
        result = scanner.feed(data, 0, cut)
        if result >= 0:
            return result, cut
    return -1, len(data)


@pytest.mark.parametrize("head", VALID)
def test_valid_heads_end_exactly_at_their_blank_line(head: bytes) -> None:
    assert _REQUEST.fullmatch(head) is not None
    assert feed_in(head, []) == (len(head), len(head))
    scanner = HeadScanner()
    for size in range(1, len(head)):
        assert scanner.feed(head, 0, size) == -1
    assert scanner.feed(head, 0, len(head)) == len(head)
    assert feed_in(head + b"GET", []) == (len(head), len(head) + 3)  # pipelined bytes: left


@pytest.mark.parametrize(("data", "bad"), INVALID)
def test_invalid_heads_are_refused_at_their_first_bad_byte(data: bytes, bad: int) -> None:
    scanner = HeadScanner()
    for size in range(1, bad + 1):
        assert scanner.feed(data, 0, size) == -1, size
    with pytest.raises(HttpSyntaxError) as refused:
        scanner.feed(data, 0, bad + 1)
    assert refused.value.status == 400
    assert _REQUEST.fullmatch(data + HEAD_END) is None  # the full parse refuses it too


def test_offsets_are_relative_to_the_head_start() -> None:
    """The session may move the partial head to the buffer's start (`_compact`)."""
    head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    padded = b"xxxx" + head
    scanner = HeadScanner()
    assert scanner.feed(padded, 4, 4 + 10) == -1
    assert scanner.feed(head, 0, 20) == -1
    assert scanner.feed(b"__" + head, 2, 2 + len(head)) == len(head)


def test_each_call_starts_where_the_last_one_stopped() -> None:
    """A head trickled byte by byte costs O(n): every call consumes what it was given (but a
    CR waiting for its LF, or a header line's start, looked at again once), and the next call
    starts from there, so no byte is scanned again and again."""
    head = b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 3000 + b"\r\n\r\n"
    scanner = HeadScanner()
    for size in range(1, len(head)):
        assert scanner.feed(head, 0, size) == -1
        assert size - 1 <= scanner.position <= size
    assert scanner.feed(head, 0, len(head)) == len(head)


FRAGMENTS = [
    b"GET",
    b"POST",
    b" ",
    b"/",
    b"/a?b",
    b"*",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2",
    b"\r\n",
    b"\r",
    b"\n",
    b"Host",
    b":",
    b": x",
    b"\t",
    b"\x00",
    b"\x16\x03",
    b"\xff",
    b"@",
]


@st.composite
def near_heads(draw: st.DrawFn) -> bytes:
    """Mostly well-formed heads with some damage, or random runs of head-like fragments."""
    if draw(st.booleans()):
        method = draw(st.sampled_from([b"GET", b"POST", b"G@T", b""]))
        target = draw(st.sampled_from([b"/", b"/x", b"*", b"", b"/ /"]))
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/1.1 "]))
        lines = draw(st.lists(st.sampled_from([*FRAGMENTS[10:], b"X: y", b"Host: a"]), max_size=4))
        return method + b" " + target + b" " + version + b"\r\n" + b"\r\n".join(lines) + HEAD_END
    return b"".join(draw(st.lists(st.sampled_from(FRAGMENTS), max_size=14)))


@settings(max_examples=400, deadline=None)
@given(near_heads(), st.randoms(use_true_random=False))
def test_the_scanner_agrees_with_the_full_parse(data: bytes, rng: random.Random) -> None:
    at = data.find(HEAD_END)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 4))) if data else []
    try:
        result, _fed = feed_in(data, cuts)
    except HttpSyntaxError:
        if at >= 0:
            assert _REQUEST.fullmatch(data[: at + 4]) is None
        return
    if at < 0:
        assert result == -1
    else:
        assert result == at + 4
        assert _REQUEST.fullmatch(data[:result]) is not None
