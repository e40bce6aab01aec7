"""fast_path.send_body (a response body's DATA frames in one call): the very bytes and stream
state h2 gives when its `send_data` is called once per frame, within both windows and the
peer's frame size; what it does not take (a stream not open for us) is left to h2."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from dataplane.proxy.http2 import fast_path
from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.flood import UNCOPIED, FloodMonitor, GuardedConnection
from dataplane.proxy.http2.front import FrontConnection
from dataplane.proxy.http2.limits import H2Limits

REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
POST = [(b":method", b"POST"), *REQUEST[1:]]
HEAD = [(b":status", b"200"), (b"server", b"pysozu")]


def servers(
    stream_window: int, connection_window: int, frame_size: int
) -> tuple[H2Connection, GuardedConnection]:
    """h2's server and ours, each with two requests (1: GET, half-closed (remote); 3: POST,
    open) answered with a head, the client granting these windows and frame size."""
    config = H2Configuration(client_side=False, header_encoding=None)
    guarded = GuardedConnection(config, FloodMonitor(H2Limits(), H2Counters(), 0.0), 100)
    plain = H2Connection(config)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.update_settings(
        {SettingCodes.INITIAL_WINDOW_SIZE: stream_window, SettingCodes.MAX_FRAME_SIZE: frame_size}
    )
    if connection_window > 65_535:
        client.increment_flow_control_window(connection_window - 65_535)
    client.send_headers(1, REQUEST, end_stream=True)
    client.send_headers(3, POST)
    request = client.data_to_send()
    for server in (plain, guarded):
        server.initiate_connection()
        server.receive_data(request)
        for stream_id in (1, 3):
            server.send_headers(stream_id, HEAD)
        server.data_to_send()
    return plain, guarded


def by_h2(conn: H2Connection, stream_id: int, data: bytes, end_stream: bool) -> int:
    """What Endpoint.send_body did before: h2's send_data per frame, within the windows."""
    window = max(0, conn.local_flow_control_window(stream_id))
    taken = min(len(data), window)
    if not taken:
        if end_stream and not data:
            conn.end_stream(stream_id)
        return 0
    frame = conn.max_outbound_frame_size
    for at in range(0, taken, frame):
        piece = data[at : min(at + frame, taken)]
        conn.send_data(stream_id, piece, end_stream and at + len(piece) == len(data))
    return taken


def state(conn: H2Connection, stream_id: int) -> tuple[object, ...]:
    stream = conn.streams[stream_id]
    machine = stream.state_machine
    return (
        machine.state,
        machine.stream_closed_by,
        stream.outbound_flow_control_window,
        conn.outbound_flow_control_window,
    )


def body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"x" * (size % 256)


@pytest.mark.parametrize("stream_id", [1, 3])  # half-closed (remote), open
@pytest.mark.parametrize(
    "size", [0, 13, UNCOPIED - 1, UNCOPIED, 16_384, 16_385, 16_384 + UNCOPIED - 1, 102_400]
)
@pytest.mark.parametrize("end_stream", [False, True])
@pytest.mark.parametrize("view", [False, True])
def test_frames_and_state_are_h2s(stream_id: int, size: int, end_stream: bool, view: bool) -> None:
    plain, guarded = servers(1 << 20, 1 << 20, 16_384)
    data = body(size)
    expected = by_h2(plain, stream_id, data, end_stream)
    given = memoryview(data)[:] if view else data
    assert fast_path.send_body(guarded, stream_id, given, end_stream) == expected == size
    assert guarded.data_to_send() == plain.data_to_send()
    assert state(guarded, stream_id) == state(plain, stream_id)


@pytest.mark.parametrize(
    "stream_window, connection_window, frame_size",
    [
        (10_000, 1 << 20, 16_384),  # the stream's window is the limit
        (1 << 20, 70_000, 16_384),  # the connection's
        (40_000, 50_000, 16_384),
        (16_384, 1 << 20, 16_384),  # exactly one frame
        (1 << 20, 1 << 20, 20_000),  # a larger frame size
        (0, 1 << 20, 16_384),  # nothing may go
    ],
)
@pytest.mark.parametrize("end_stream", [False, True])
def test_the_windows_bound_it_as_they_bound_h2(
    stream_window: int, connection_window: int, frame_size: int, end_stream: bool
) -> None:
    plain, guarded = servers(stream_window, connection_window, frame_size)
    data = body(102_400)
    for stream_id in (1, 3):  # the second sends within what the first left of the connection's
        expected = by_h2(plain, stream_id, data, end_stream)
        assert fast_path.send_body(guarded, stream_id, data, end_stream) == expected
        assert guarded.data_to_send() == plain.data_to_send()
        assert state(guarded, stream_id) == state(plain, stream_id)


def test_an_empty_end_of_stream_goes_even_on_a_closed_window() -> None:
    plain, guarded = servers(0, 1 << 20, 16_384)
    plain.end_stream(3)
    assert fast_path.send_body(guarded, 3, b"", True) == 0
    assert guarded.data_to_send() == plain.data_to_send()
    assert state(guarded, 3) == state(plain, 3)
    assert fast_path.send_body(guarded, 1, b"", False) == 0  # nothing to do
    assert guarded.data_to_send() == b""


def test_what_it_leaves_to_h2() -> None:
    _plain, guarded = servers(1 << 20, 1 << 20, 16_384)
    assert fast_path.send_body(guarded, 5, b"x", True) == -1  # no such stream
    assert fast_path.send_body(guarded, 1, b"x", True) == 1  # now closed
    assert fast_path.send_body(guarded, 1, b"x", True) == -1
    guarded.reset_stream(3, ErrorCodes.CANCEL)
    assert fast_path.send_body(guarded, 3, b"x", False) == -1
    _plain, guarded = servers(1 << 20, 1 << 20, 16_384)
    guarded.close_connection(ErrorCodes.NO_ERROR)
    assert fast_path.send_body(guarded, 3, b"x", False) == -1


def test_the_endpoint_counts_its_frames_and_takes_what_the_window_allows() -> None:
    front = FrontConnection(now=0.0)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 40_000})
    client.increment_flow_control_window(1 << 20)
    client.send_headers(1, REQUEST, end_stream=True)
    front.receive(client.data_to_send(), 0.0)
    client.receive_data(front.data_to_send())
    front.receive(client.data_to_send(), 0.0)  # the SETTINGS ack, the windows
    assert front.send_response(1, 200, [])
    credit = front.monitor.window_credit
    data = body(102_400)
    assert front.send_body(1, data, end_stream=True) == 40_000  # 3 frames
    assert front.monitor.window_credit == credit + 3
    assert 1 in front.active  # not ended: the rest waits for the window
    events = client.receive_data(front.data_to_send())
    received = b"".join(e.data for e in events if type(e).__name__ == "DataReceived")  # type: ignore[attr-defined]
    assert received == data[:40_000]
    assert front.send_body(1, data[40_000:], end_stream=True) == 0


@pytest.mark.parametrize("end_stream", [False, True])
def test_a_clients_request_body_is_framed_as_h2_frames_it(end_stream: bool) -> None:
    """The back side (an h2c backend) sends request bodies through the same call."""
    config = H2Configuration(client_side=True, header_encoding=None)
    guarded = GuardedConnection(config, FloodMonitor(H2Limits(), H2Counters(), 0.0), 100)
    plain = H2Connection(config)
    data = body(40_000)
    for conn in (plain, guarded):
        conn.initiate_connection()
        conn.send_headers(1, POST)
        conn.data_to_send()
    expected = by_h2(plain, 1, data, end_stream)
    assert fast_path.send_body(guarded, 1, data, end_stream) == expected == 40_000
    assert guarded.data_to_send() == plain.data_to_send()
    assert state(guarded, 1) == state(plain, 1)
