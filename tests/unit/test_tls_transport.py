"""TlsStream over a scripted SSL object: reads drain OpenSSL's pending bytes and say when none
wait (`drained`), writes keep OpenSSL's retry rule (same bytes again), "want read/write" becomes
BlockingIOError, an EOF with or without close_notify reads as 0."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from dataplane.proxy.tls.transport import JOIN_LIMIT, TlsStream


class FakeTls:
    """Plays an SSL socket and the C object under it (`_sslobj`, what TlsStream calls):
    `records` are decrypted records, `room` is what a write accepts."""

    def __init__(self, records: list[bytes] | None = None, room: int = 1 << 30) -> None:
        self.records = list(records or [])
        self.current = b""
        self.room = room
        self.sent: list[bytes] = []
        self.pending_calls = 0
        self._sslobj = self

    def pending(self) -> int:
        self.pending_calls += 1
        return len(self.current)

    def read(self, size: int, view: Any) -> int:
        assert size <= len(view)
        if not self.current:
            if not self.records:
                raise ssl.SSLWantReadError()
            self.current = self.records.pop(0)
            if self.current == b"EOF":
                raise ssl.SSLZeroReturnError()
            if self.current == b"RAGGED":
                raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        size = min(size, len(self.current))
        view[:size] = self.current[:size]
        self.current = self.current[size:]
        return size

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            raise ssl.SSLWantWriteError()  # OpenSSL without partial writes: all or nothing
        self.room -= len(data)
        self.sent.append(bytes(data))
        return len(data)


def stream(fake: FakeTls) -> TlsStream:
    return TlsStream(fake)  # type: ignore[arg-type]


def test_read_drains_what_openssl_already_decrypted() -> None:
    fake = FakeTls([b"a" * 10])
    tls = stream(fake)
    buffer = bytearray(4)
    assert tls.recv_into(memoryview(buffer)) == 4  # the view is full: 6 stay pending
    assert not tls.drained and fake.pending_calls == 0
    assert tls.pending() == 6
    buffer = bytearray(100)
    assert tls.recv_into(memoryview(buffer)) == 6
    assert tls.drained  # asked: none wait


def test_read_takes_every_record_already_decrypted_until_none_waits() -> None:
    fake = FakeTls([b"one", b"two"])
    fake.current = fake.records.pop(0)  # a record OpenSSL decrypted ahead
    tls = stream(fake)
    buffer = bytearray(100)
    assert tls.recv_into(memoryview(buffer)) == 3  # "two" is not decrypted yet: not pending
    assert tls.drained and fake.pending_calls == 1
    assert tls.recv_into(memoryview(buffer)) == 3 and buffer[:3] == b"two"


def test_a_stream_starts_not_drained() -> None:
    assert not stream(FakeTls()).drained  # the first readiness event asks pending()


def test_read_without_data_would_block_and_close_notify_reads_zero() -> None:
    tls = stream(FakeTls())
    with pytest.raises(BlockingIOError):
        tls.recv_into(memoryview(bytearray(8)))
    assert tls.drained
    assert stream(FakeTls([b"EOF"])).recv_into(memoryview(bytearray(8))) == 0


def test_an_eof_without_close_notify_reads_zero_as_ssl_py_does() -> None:
    assert stream(FakeTls([b"RAGGED"])).recv_into(memoryview(bytearray(8))) == 0
    assert stream(FakeTls([b"RAGGED"])).recv(8) == b""


def test_recv_reads_what_a_lingering_session_discards() -> None:
    tls = stream(FakeTls([b"left over"]))
    assert tls.recv(4) == b"left"
    assert not tls.drained
    assert tls.recv(100) == b" over"
    with pytest.raises(BlockingIOError):
        tls.recv(100)
    assert tls.drained
    assert stream(FakeTls([b"EOF"])).recv(8) == b""


def test_a_stream_needs_an_established_ssl_object() -> None:
    fake = FakeTls()
    fake._sslobj = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match="closed or unwrapped"):
        stream(fake)


def test_small_pieces_are_joined_into_one_write() -> None:
    fake = FakeTls()
    assert stream(fake).sendmsg([b"head", b"", memoryview(b"body")]) == 8
    assert fake.sent == [b"headbody"]


def test_nothing_to_write_writes_nothing() -> None:
    fake = FakeTls()
    assert stream(fake).sendmsg([b""]) == 0
    assert stream(fake).sendmsg([b"", memoryview(b"")]) == 0
    assert stream(fake).sendmsg([memoryview(b"one")]) == 3
    assert fake.sent == [b"one"]


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
    fake = FakeTls(room=3)
    with pytest.raises(BlockingIOError):  # nothing went out: the engine retries them all
        stream(fake).sendmsg([b"head", b"", big])
