"""TlsStream over a scripted SSL socket: reads drain OpenSSL's pending bytes, writes keep
OpenSSL's retry rule (same bytes again), "want read/write" becomes BlockingIOError."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from dataplane.proxy.tls.transport import JOIN_LIMIT, TlsStream


class FakeTls:
    """Plays an SSL socket: `records` are decrypted records, `room` is what send accepts."""

    def __init__(self, records: list[bytes] | None = None, room: int = 1 << 30) -> None:
        self.records = list(records or [])
        self.current = b""
        self.room = room
        self.sent: list[bytes] = []

    def pending(self) -> int:
        return len(self.current)

    def recv_into(self, view: memoryview) -> int:
        if not self.current:
            if not self.records:
                raise ssl.SSLWantReadError()
            self.current = self.records.pop(0)
            if self.current == b"EOF":
                raise ssl.SSLZeroReturnError()
        size = min(len(view), len(self.current))
        view[:size] = self.current[:size]
        self.current = self.current[size:]
        return size

    def send(self, data: Any) -> int:
        if len(data) > self.room:
            raise ssl.SSLWantWriteError()  # OpenSSL without partial writes: all or nothing
        self.room -= len(data)
        self.sent.append(bytes(data))
        return len(data)


def stream(fake: FakeTls) -> TlsStream:
    return TlsStream(fake)  # type: ignore[arg-type]


def test_read_drains_what_openssl_already_decrypted() -> None:
    fake = FakeTls([b"a" * 10])
    buffer = bytearray(4)
    assert stream(fake).recv_into(memoryview(buffer)) == 4  # the view is full: 6 stay pending
    assert fake.pending() == 6
    buffer = bytearray(100)
    assert stream(fake).recv_into(memoryview(buffer)) == 6


def test_read_without_data_would_block_and_close_notify_reads_zero() -> None:
    with pytest.raises(BlockingIOError):
        stream(FakeTls()).recv_into(memoryview(bytearray(8)))
    assert stream(FakeTls([b"EOF"])).recv_into(memoryview(bytearray(8))) == 0


def test_small_pieces_are_joined_into_one_write() -> None:
    fake = FakeTls()
    assert stream(fake).sendmsg([b"head", b"", memoryview(b"body")]) == 8
    assert fake.sent == [b"headbody"]


def test_a_write_that_cannot_finish_would_block_and_is_retried_with_the_same_bytes() -> None:
    fake = FakeTls(room=5)
    tls = stream(fake)
    with pytest.raises(BlockingIOError):
        tls.sendmsg([b"head", b"body"])
    fake.room = 100
    assert tls.sendmsg([b"head", b"body"]) == 8
    assert fake.sent == [b"headbody"]


def test_large_pieces_go_one_by_one_and_report_what_went_out() -> None:
    big = b"x" * JOIN_LIMIT
    fake = FakeTls(room=JOIN_LIMIT + 10)
    assert stream(fake).sendmsg([b"head", big, big]) == 4 + JOIN_LIMIT
    assert fake.sent == [b"head", big]
