"""GuardedConnection's output path (frames kept as a list, DATA bodies not copied) writes the
very bytes h2's own does."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.flood import UNCOPIED, FloodMonitor, GuardedConnection
from dataplane.proxy.http2.limits import H2Limits

REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]


def pair() -> tuple[H2Connection, GuardedConnection]:
    config = H2Configuration(client_side=True, header_encoding=None)
    limits = H2Limits()
    guarded = GuardedConnection(config, FloodMonitor(limits, H2Counters(), 0.0), 100)
    return H2Connection(config), guarded


def script(conn: H2Connection, body: bytes, chunk: int) -> bytes:
    out = bytearray()
    conn.initiate_connection()
    conn.send_headers(1, REQUEST)
    out += conn.data_to_send()
    conn.increment_flow_control_window(1 << 20)  # h2 writes this one itself, as a frame
    for at in range(0, len(body), chunk):
        conn.send_data(1, body[at : at + chunk], end_stream=at + chunk >= len(body))
    conn.send_headers(3, REQUEST, end_stream=True)
    conn.reset_stream(3, ErrorCodes.CANCEL)
    out += conn.data_to_send()
    return bytes(out)


@pytest.mark.parametrize(
    "size, chunk",
    [(13, 13), (UNCOPIED - 1, 1000), (UNCOPIED, UNCOPIED), (60_000, 16_384), (65_535, 5_000)],
)
def test_the_bytes_written_are_h2s(size: int, chunk: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    plain, guarded = pair()
    assert script(guarded, body, chunk) == script(plain, body, chunk)


def test_a_partial_read_of_the_output_keeps_the_rest_in_order() -> None:
    plain, guarded = pair()
    expected = script(plain, b"y" * 20_000, 16_384)
    guarded.initiate_connection()
    guarded.send_headers(1, REQUEST)
    guarded.increment_flow_control_window(1 << 20)
    guarded.send_data(1, b"y" * 16_384)
    guarded.send_data(1, b"y" * 3_616, end_stream=True)
    guarded.send_headers(3, REQUEST, end_stream=True)
    guarded.reset_stream(3, ErrorCodes.CANCEL)
    head = guarded.data_to_send(100)
    assert head + guarded.data_to_send() == expected
    guarded.send_headers(5, REQUEST)
    guarded.clear_outbound_data_buffer()
    assert guarded.data_to_send() == b""
