"""HTTP/2 frame-layer errors and oddities, sent as raw frames to a running pysozu over TLS.

Ports sozu's h2_security_tests / h2_security_parser / h2_tests frame scenarios (the mapping is
in docs/testing-h2.md). Each case opens its own connection to one proxy; a connection error
must be a GOAWAY with the RFC 9113 code, a tolerated oddity must leave the connection serving,
and after every case a fresh connection must still be answered (no crashed worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from h2_support import EchoBackend, tls_config
from h2_wire import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_UPDATE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    Wire,
    block,
    frame,
    request_fields,
    rst_stream,
    settings,
    window_update,
)
from https_support import Pki

pytestmark = pytest.mark.timeout(120)

COMPRESSION_ERROR = 9


@pytest.fixture
def proxy(pysozu: Any, tmp_path: Path) -> Iterator[tuple[int, Pki]]:
    echo = EchoBackend()
    try:
        pki = Pki(tmp_path)
        port = pysozu.free_port()
        pysozu.start(tls_config(port, echo.port, pki.issue("example.com")), workers=1)
        yield port, pki
    finally:
        echo.stop()


def _get(stream: int, path: str = "/", end: bool = True) -> bytes:
    flags = END_HEADERS | (END_STREAM if end else 0)
    return frame(HEADERS, flags, stream, block(request_fields(path)))


def _served(port: int, pki: Pki) -> None:
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_get(1, "/still-serving"))
        assert wire.response(1)[0] == 200
    finally:
        wire.close()


_HEAD = _get(1, end=False)
_HUGE = 0x7FFF_FFFF
# name -> (frames after the preface and SETTINGS, the GOAWAY code expected)
CONNECTION_ERRORS: dict[str, tuple[bytes, int]] = {
    "settings ack with a payload": (frame(SETTINGS, 1, 0, settings((4, 100))), FRAME_SIZE_ERROR),
    "settings length not a multiple of 6": (frame(SETTINGS, 0, 0, b"\0\4\0"), FRAME_SIZE_ERROR),
    "settings on a stream": (frame(SETTINGS, 0, 1, settings((4, 100))), PROTOCOL_ERROR),
    "enable_push 2": (frame(SETTINGS, 0, 0, settings((2, 2))), PROTOCOL_ERROR),
    "initial window over 2^31-1": (frame(SETTINGS, 0, 0, settings((4, 2**31))), FLOW_CONTROL_ERROR),
    "max frame size under 16384": (frame(SETTINGS, 0, 0, settings((5, 100))), PROTOCOL_ERROR),
    "headers on stream 0": (_get(0), PROTOCOL_ERROR),
    "even stream id": (_get(2), PROTOCOL_ERROR),
    "stream id regression": (_get(5) + _get(3), PROTOCOL_ERROR),
    "data on an idle stream": (frame(DATA, END_STREAM, 3, b"x"), PROTOCOL_ERROR),
    "data on stream 0": (frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
    "rst_stream on stream 0": (rst_stream(0), PROTOCOL_ERROR),
    "rst_stream on an idle stream": (rst_stream(7), PROTOCOL_ERROR),
    "rst_stream of 3 bytes": (_HEAD + frame(RST_STREAM, 0, 1, b"\0\0\0"), FRAME_SIZE_ERROR),
    "goaway on a stream": (frame(GOAWAY, 0, 1, b"\0" * 8), PROTOCOL_ERROR),
    "goaway of 4 bytes": (frame(GOAWAY, 0, 0, b"\0" * 4), FRAME_SIZE_ERROR),
    "ping of 7 bytes": (frame(PING, 0, 0, b"\0" * 7), FRAME_SIZE_ERROR),
    "ping on a stream": (frame(PING, 0, 1, b"\0" * 8), PROTOCOL_ERROR),
    "client push_promise": (
        _HEAD + frame(PUSH_PROMISE, END_HEADERS, 1, b"\0\0\0\2"),
        PROTOCOL_ERROR,
    ),
    "standalone continuation": (frame(CONTINUATION, END_HEADERS, 1, b""), PROTOCOL_ERROR),
    "continuation on another stream": (
        frame(HEADERS, END_STREAM, 1, block(request_fields()))
        + frame(CONTINUATION, END_HEADERS, 3, b""),
        PROTOCOL_ERROR,
    ),
    "frame between headers and continuation": (
        frame(HEADERS, END_STREAM, 1, block(request_fields())) + frame(PING, 0, 0, b"\0" * 8),
        PROTOCOL_ERROR,
    ),
    "window_update of 0 on the connection": (window_update(0, 0), PROTOCOL_ERROR),
    "connection window overflow": (window_update(0, _HUGE), FLOW_CONTROL_ERROR),
    "data padding longer than the frame": (
        _HEAD + frame(DATA, PADDED | END_STREAM, 1, b"\x09abc"),
        PROTOCOL_ERROR,
    ),
    "headers padding longer than the frame": (
        frame(HEADERS, PADDED | END_HEADERS, 1, b"\xff" + block(request_fields())),
        PROTOCOL_ERROR,
    ),
    "hpack garbage": (
        frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\xff\x7f"),
        COMPRESSION_ERROR,
    ),
    "data over the max frame size": (_HEAD + frame(DATA, 0, 1, b"x" * 16_385), FRAME_SIZE_ERROR),
    "priority of 4 bytes": (frame(PRIORITY, 0, 1, b"\0\0\0\0"), FRAME_SIZE_ERROR),
}


def test_connection_errors_are_goaways_with_their_code(proxy: tuple[int, Pki]) -> None:
    port, pki = proxy
    wrong: dict[str, object] = {}
    for name, (frames, code) in CONNECTION_ERRORS.items():
        wire = Wire(port, pki.client_context())
        try:
            wire.send(frames)
            got = wire.goaway()
            if got is None or got[1] != code:
                wrong[name] = (got, "expected code", code)
        finally:
            wire.close()
    _served(port, pki)
    assert not wrong, wrong


def test_a_reused_stream_id_is_refused(proxy: tuple[int, Pki]) -> None:
    """HEADERS again on a stream the client ended: STREAM_CLOSED (RFC 9113 5.1), as a reset of
    that stream or the end of the connection; never a second request."""
    port, pki = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_get(1, "/first"))
        assert wire.response(1)[0] == 200
        wire.send(_get(1, "/again"))
        got = wire.goaway(timeout=2)
        reset = [f for f in wire.received if f.kind == RST_STREAM and f.stream == 1]
        assert reset or got is not None, wire.received
        codes = {int.from_bytes(f.payload, "big") for f in reset} | ({got[1]} if got else set())
        assert codes <= {STREAM_CLOSED, PROTOCOL_ERROR}, codes
        assert 1 not in wire.heads, "a second response on stream 1"
    finally:
        wire.close()
    _served(port, pki)


def test_a_corrupted_preface_ends_the_connection(proxy: tuple[int, Pki]) -> None:
    port, pki = proxy
    wire = Wire(port, pki.client_context(), preface=b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    try:
        got = wire.goaway()
        assert got is None or got[1] == PROTOCOL_ERROR, got
        wire.wait(lambda f: False, timeout=3)
        assert wire.closed
    finally:
        wire.close()
    _served(port, pki)


def test_too_many_settings_entries_end_the_connection(proxy: tuple[int, Pki]) -> None:
    port, pki = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(frame(SETTINGS, 0, 0, settings(*[(0x4242, n) for n in range(65)])))
        got = wire.goaway()
        assert got is not None and got[1] != 0, got
    finally:
        wire.close()
    _served(port, pki)


def test_tolerated_oddities_leave_the_connection_serving(proxy: tuple[int, Pki]) -> None:
    """Unknown frame types, PRIORITY, PRIORITY_UPDATE, unknown SETTINGS, a set reserved bit,
    all-padding DATA, a HEADERS with priority and padding: ignored or taken as RFC 9113 says."""
    port, pki = proxy
    wire = Wire(port, pki.client_context(), client_settings=settings((0x4242, 1), (1, 0)))
    try:
        wire.send(
            frame(0x42, 0xFF, 0, b"unknown frame type on stream 0"),
            frame(0x42, 0, 9, b"unknown frame type on an idle stream"),
            frame(PRIORITY, 0, 1, b"\0\0\0\0\x10"),
            frame(PRIORITY_UPDATE, 0, 0, b"\0\0\0\1u=0"),
            frame(SETTINGS, 0, 0, settings((0x4242, 7))),
            # stream 1 with the reserved bit set: the receiver ignores that bit
            frame(HEADERS, END_HEADERS, 0x8000_0001, block(request_fields("/r", "POST"))),
            frame(DATA, PADDED, 1, b"\x05" + b"\0" * 5),  # all padding, no data
            frame(DATA, PADDED | END_STREAM, 1, b"\x02ab\0\0"),
            frame(
                HEADERS,
                PADDED | 0x20 | END_HEADERS | END_STREAM,
                3,
                b"\x03" + b"\0\0\0\1\x20" + block(request_fields("/p")) + b"\0\0\0",
            ),
        )
        status, _, body = wire.response(1)
        assert status == 200 and b'"length": 2' in body, body
        assert wire.response(3)[0] == 200
        # HPACK with a header table of 0 (SETTINGS_HEADER_TABLE_SIZE=0 above): still decodable
        wire.send(_get(5, "/table-0"))
        assert wire.response(5)[0] == 200
        assert wire.alive()
        assert not [f for f in wire.received if f.kind == GOAWAY]
    finally:
        wire.close()


def test_a_stream_window_overflow_resets_only_that_stream(proxy: tuple[int, Pki]) -> None:
    port, pki = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_get(1, end=False), window_update(1, _HUGE))
        assert wire.reset_code(1) == FLOW_CONTROL_ERROR
        wire.send(_get(3))
        assert wire.response(3)[0] == 200
    finally:
        wire.close()


def test_padded_data_counts_against_the_window_and_is_credited(proxy: tuple[int, Pki]) -> None:
    """200 KB of padded DATA frames (255 bytes of padding each) in one upload: the proxy must
    give the padding back, or the 65535-byte initial windows would stall the upload."""
    port, pki = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(frame(HEADERS, END_HEADERS, 1, block(request_fields("/pad", "POST"))))
        chunk = b"\xff" + b"d" * 1000 + b"\0" * 255
        sent = 0
        for n in range(200):
            end = END_STREAM if n == 199 else 0
            assert wire.send(frame(DATA, PADDED | end, 1, chunk))
            sent += 1000
            if n % 40 == 39:  # let the credit come back before the windows run out
                wire.wait(lambda f: f.kind == WINDOW_UPDATE and f.stream == 0)
        status, _, body = wire.response(1, timeout=20)
        assert status == 200 and f'"length": {sent}'.encode() in body, body
    finally:
        wire.close()
