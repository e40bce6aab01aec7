"""http1/head.py find_head: a head found in a bytes copy of the buffer, or taken as the
connection's previous head without a search."""

from __future__ import annotations

import mmap

import pytest

from dataplane.proxy.http1.head import SMALL_READ, find_head, head_bytes

HEAD = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def _mmap(data: bytes) -> mmap.mmap:
    buffer = mmap.mmap(-1, max(len(data), 1) + 64)
    buffer[: len(data)] = data
    return buffer


@pytest.mark.parametrize("make", [_mmap, bytearray])
def test_a_whole_head_is_the_copy(make: type) -> None:
    data = b"xx" + HEAD
    buffer = make(data + bytes(64)) if make is bytearray else make(data)
    head, at, _ = find_head(buffer, 2, 2 + len(HEAD), b"")
    assert (head, at) == (HEAD, 2 + len(HEAD))
    assert type(head) is bytes


def test_pipelined_heads_split_at_the_first() -> None:
    second = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    buffer = _mmap(HEAD + second)
    assert find_head(buffer, 0, len(HEAD) + len(second), b"")[:2] == (HEAD, len(HEAD))


def test_an_incomplete_head_gives_its_bytes() -> None:
    buffer = _mmap(HEAD[:-2])
    assert find_head(buffer, 0, len(HEAD) - 2, b"")[:2] == (HEAD[:-2], -1)


def test_the_previous_head_is_taken_without_a_search() -> None:
    buffer = _mmap(HEAD + b"body")
    head, at, copied = find_head(buffer, 0, len(HEAD) + 4, HEAD)
    assert head is HEAD and at == len(HEAD) and copied == HEAD + b"body"
    other = b"GET /other HTTP/1.1\r\n\r\n"
    assert find_head(buffer, 0, len(HEAD) + 4, other)[:2] == (HEAD, len(HEAD))
    assert find_head(_mmap(HEAD[:10]), 0, 10, HEAD)[:2] == (HEAD[:10], -1)


def test_a_head_longer_than_the_copy_is_found_in_the_buffer() -> None:
    long = b"GET / HTTP/1.1\r\nX: " + b"a" * SMALL_READ + b"\r\n\r\n"
    buffer = _mmap(long + b"rest")
    assert find_head(buffer, 0, len(long) + 4, b"")[:2] == (long, len(long))
    assert find_head(buffer, 0, len(long) - 1, b"")[:2] == (b"", -1)
    # the end split across the copy's edge
    edge = b"G" * (SMALL_READ - 2) + b"\r\n\r\n"
    assert find_head(_mmap(edge), 0, len(edge), b"")[:2] == (edge, len(edge))


def test_head_bytes_is_bytes() -> None:
    assert head_bytes(bytearray(b"abc"), 1, 3) == b"bc"
    assert type(head_bytes(bytearray(b"abc"), 1, 3)) is bytes
