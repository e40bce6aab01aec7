"""fast_path's HEADERS and DATA frames: the very bytes h2 writes, and h2's stream state after
them; whatever it does not take (1xx, a closed connection or stream, a request head) is left
to h2."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes
from h2.stream import STREAM_OPEN, StreamClosedBy, StreamState
from hyperframe.frame import Frame, HeadersFrame

from dataplane.proxy.http2 import fast_path, fast_receive, hpack_fields
from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.flood import UNCOPIED, FloodMonitor, GuardedConnection, MonitoredBuffer
from dataplane.proxy.http2.front import FrontConnection
from dataplane.proxy.http2.hpack_cache import CachedEncoder
from dataplane.proxy.http2.limits import H2Limits

REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
POST = [(b":method", b"POST"), *REQUEST[1:]]
HEAD = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"server", b"pysozu")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"fine")]
Head = list[tuple[bytes, bytes]]


def servers() -> tuple[H2Connection, GuardedConnection, H2Connection]:
    """h2's server, ours, and a client whose two requests (1: GET, 3: POST with its body
    still open) both received."""
    config = H2Configuration(client_side=False, header_encoding=None)
    guarded = GuardedConnection(config, FloodMonitor(H2Limits(), H2Counters(), 0.0), 100)
    plain = H2Connection(config)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    client.send_headers(3, POST)
    request = client.data_to_send()
    for server in (plain, guarded):
        server.initiate_connection()
        server.receive_data(request)
        server.data_to_send()
    return plain, guarded, client


def by_h2(conn: H2Connection, stream_id: int, head: Head, body: bytes, trailers: bool) -> None:
    conn.send_headers(stream_id, head, end_stream=not body and not trailers)
    if body:
        conn.send_data(stream_id, body, end_stream=not trailers)
    if trailers:
        conn.send_headers(stream_id, TRAILERS, end_stream=True)


def by_fast_path(
    conn: H2Connection, stream_id: int, head: Head, body: bytes, trailers: bool
) -> None:
    assert isinstance(conn, GuardedConnection)
    assert fast_path.send_headers(conn, stream_id, head, not body and not trailers)
    if body:
        assert fast_path.send_data(conn, stream_id, body, not trailers)
    if trailers:
        assert fast_path.send_headers(conn, stream_id, TRAILERS, True)


def state(conn: H2Connection, stream_id: int) -> tuple[object, ...]:
    stream = conn.streams[stream_id]
    machine = stream.state_machine
    return (
        machine.state,
        machine.headers_sent,
        machine.trailers_sent,
        machine.stream_closed_by,
        stream.outbound_flow_control_window,
        conn.outbound_flow_control_window,
        stream.request_method,
    )


@pytest.mark.parametrize("stream_id", [1, 3])  # half-closed (remote), open
@pytest.mark.parametrize("size", [0, 13, UNCOPIED - 1, UNCOPIED, 16_384])
@pytest.mark.parametrize("trailers", [False, True])
def test_frames_and_state_are_h2s(stream_id: int, size: int, trailers: bool) -> None:
    plain, guarded, _client = servers()
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    by_h2(plain, stream_id, HEAD, body, trailers)
    by_fast_path(guarded, stream_id, HEAD, body, trailers)
    assert guarded.data_to_send() == plain.data_to_send()
    assert state(guarded, stream_id) == state(plain, stream_id)


def test_a_closed_stream_is_closed_by_our_end_stream() -> None:
    _plain, guarded, client = servers()
    by_fast_path(guarded, 1, HEAD, b"hello", False)
    assert guarded.streams[1].closed
    assert guarded.streams[1].closed_by == StreamClosedBy.SEND_END_STREAM
    events = client.receive_data(guarded.data_to_send())
    names = [type(event).__name__ for event in events]
    assert names == ["ResponseReceived", "DataReceived", "StreamEnded"]


def test_a_head_larger_than_a_frame_goes_with_continuations() -> None:
    plain, guarded, client = servers()
    head = [*HEAD, *((b"x-filler-%d" % n, b"v" * 1000) for n in range(40))]  # ~40 kB
    plain.send_headers(1, head, end_stream=True)
    assert fast_path.send_headers(guarded, 1, head, True)
    out = guarded.data_to_send()
    assert out == plain.data_to_send()
    assert out[3] == 0x1 and out[4] == 0x1  # HEADERS: END_STREAM, no END_HEADERS
    received = [e for e in client.receive_data(out) if type(e).__name__ == "ResponseReceived"]
    assert received[0].headers == head  # type: ignore[attr-defined]


def test_trailers_without_end_stream_are_refused_as_h2_refuses_them() -> None:
    _plain, guarded, _client = servers()
    assert fast_path.send_headers(guarded, 3, HEAD, False)
    with pytest.raises(ProtocolError, match="Trailers must have END_STREAM"):
        fast_path.send_headers(guarded, 3, TRAILERS, False)


def test_what_the_fast_path_leaves_to_h2() -> None:
    _plain, guarded, _client = servers()
    informational = [(b":status", b"103"), (b"link", b"</a.css>")]
    assert not fast_path.send_headers(guarded, 1, informational, False)
    assert not fast_path.send_headers(guarded, 5, HEAD, True)  # no such stream
    assert not fast_path.send_data(guarded, 5, b"x", True)
    guarded.reset_stream(3, ErrorCodes.CANCEL)
    assert not fast_path.send_headers(guarded, 3, HEAD, True)  # closed stream
    assert not fast_path.send_data(guarded, 3, b"x", True)
    guarded.close_connection(ErrorCodes.NO_ERROR)
    assert not fast_path.send_headers(guarded, 1, HEAD, True)  # closed connection
    assert not fast_path.send_data(guarded, 1, b"x", True)
    assert guarded.streams[1].state_machine.state == StreamState.HALF_CLOSED_REMOTE


def test_a_client_request_head_is_left_to_h2_its_trailers_are_not() -> None:
    config = H2Configuration(client_side=True, header_encoding=None)
    guarded = GuardedConnection(config, FloodMonitor(H2Limits(), H2Counters(), 0.0), 100)
    plain = H2Connection(config)
    for conn in (plain, guarded):
        conn.initiate_connection()
        conn.send_headers(1, POST)
    assert not fast_path.send_headers(guarded, 3, POST, True)
    plain.send_data(1, b"body")
    plain.send_headers(1, TRAILERS, end_stream=True)
    assert fast_path.send_data(guarded, 1, b"body", False)
    assert fast_path.send_headers(guarded, 1, TRAILERS, True)
    assert guarded.data_to_send() == plain.data_to_send()
    assert state(guarded, 1) == state(plain, 1)


# -- the way in ------------------------------------------------------------------------------


def parsed(raw: bytes) -> HeadersFrame:
    frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
    frame.parse_body(memoryview(raw[9 : 9 + length]))
    assert isinstance(frame, HeadersFrame)
    return frame


def attributes(frame: Frame) -> dict[str, object]:
    fields = dict(vars(frame))
    fields["flags"] = (set(frame.flags), frame.flags._valid_flags)
    return fields


@pytest.mark.parametrize("flags", [0x4, 0x5, 0x4 | 0x2 | 0x10 | 0x40 | 0x80])
def test_a_headers_frame_is_hyperframes(flags: int) -> None:
    raw = HeadersFrame(7, data=b"\x82\x86\x84", flags=()).serialize()
    raw = raw[:4] + bytes([flags]) + raw[5:]
    ours = fast_receive.headers_frame(flags, 7, raw[9:])
    assert ours is not None
    assert attributes(ours) == attributes(parsed(raw))
    assert ("END_STREAM" in ours.flags) == bool(flags & 0x1)


@pytest.mark.parametrize(
    "flags, stream_id",
    [(0x4 | 0x8, 1), (0x4 | 0x20, 1), (0x1, 1), (0x0, 1), (0x4, 0)],  # padded, priority, ...
)
def test_what_hyperframe_still_parses(flags: int, stream_id: int) -> None:
    assert fast_receive.headers_frame(flags, stream_id, b"\x82") is None


def frames(buffer: FrameBuffer, data: bytes) -> list[dict[str, object]]:
    buffer.add_data(data)
    return [attributes(frame) for frame in buffer]


def test_our_buffer_yields_the_frames_h2s_does() -> None:
    head = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    big = [*head, *((b"x-%d" % n, b"v" * 100) for n in range(400))]  # CONTINUATIONs
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, head, end_stream=True)
    client.send_headers(3, head, priority_weight=200)
    client.send_data(3, b"body", pad_length=3)
    client.send_headers(5, big, end_stream=True)
    client.send_headers(7, head)
    data = client.data_to_send()
    padded = HeadersFrame(9, data=b"\x82\x86\x84\x41\x01a", pad_length=4, flags=["PADDED"])
    padded.flags.add("END_HEADERS")
    data += padded.serialize()
    monitor = FloodMonitor(H2Limits(), H2Counters(), 0.0)
    ours, h2s = MonitoredBuffer(monitor, server=True), FrameBuffer(server=True)
    ours.max_frame_size = h2s.max_frame_size = 16_384
    for chunk in (data[:30], data[30:31], data[31:5000], data[5000:]):  # frames cut anywhere
        assert frames(ours, chunk) == frames(h2s, chunk)


def test_open_streams_counts_and_forgets_as_h2_does() -> None:
    plain, guarded, client = servers()
    for server in (plain, guarded):
        server.send_headers(1, HEAD, end_stream=True)  # closed
        server.send_headers(3, HEAD)  # open
        server.reset_stream(3, ErrorCodes.CANCEL)  # closed, by us
    client.send_headers(5, REQUEST)
    client.send_headers(7, REQUEST, end_stream=True)
    request = client.data_to_send()
    for server in (plain, guarded):
        server.receive_data(request)
    for side in (1, 0, 1):
        assert guarded._open_streams(side) == H2Connection._open_streams(plain, side)
        assert list(guarded.streams) == list(plain.streams) == [5, 7]
        assert guarded._closed_streams == plain._closed_streams


def test_h2s_open_states_are_the_three_open_streams_checks() -> None:
    opened = {state for state in StreamState if STREAM_OPEN[state]}
    assert opened == {
        StreamState.OPEN,
        StreamState.HALF_CLOSED_LOCAL,
        StreamState.HALF_CLOSED_REMOTE,
    }


def test_open_streams_counts_every_open_state_as_h2_does() -> None:
    plain, guarded, client = servers()  # 1: half-closed (remote), 3: open
    client.send_headers(5, POST)
    request = client.data_to_send()
    for server in (plain, guarded):
        server.receive_data(request)
        server.send_headers(5, HEAD, end_stream=True)  # half-closed (local)
    states = {i: s.state_machine.state for i, s in guarded.streams.items()}
    assert states == {
        1: StreamState.HALF_CLOSED_REMOTE,
        3: StreamState.OPEN,
        5: StreamState.HALF_CLOSED_LOCAL,
    }
    for side in (1, 0):
        assert guarded._open_streams(side) == H2Connection._open_streams(plain, side)
    assert fast_receive.open_streams(guarded, 1) == 3


def test_a_cached_encoders_blocks_are_the_same_by_either_path() -> None:
    """fast_path codes a head with the CachedEncoder's fields directly once its table size
    update went out: the bytes are those its encode() gives h2, and decode the same (the
    worker-wide cache warmed first, a request id's sighting forgotten between the two)."""
    plain, guarded, client = servers()
    for server in (plain, guarded):
        server.encoder = CachedEncoder()
    CachedEncoder().encode(HEAD + HEAD)  # HEAD seen twice: its fields' bytes are cached
    heads = [[*HEAD, (b"sozu-id", b"id-%d" % n)] for n in range(4)]
    client.send_headers(5, POST)
    client.send_headers(7, POST)
    request = client.data_to_send()
    for server in (plain, guarded):
        server.receive_data(request)
        server.data_to_send()
    for stream_id, head in zip((1, 3, 5, 7), heads, strict=True):
        plain.send_headers(stream_id, head, end_stream=True)
        hpack_fields.seen.discard(head[-1])
        assert fast_path.send_headers(guarded, stream_id, head, True)
        sent = guarded.data_to_send()
        assert sent == plain.data_to_send()
        events = client.receive_data(sent)
        assert [e.headers for e in events if hasattr(e, "headers")] == [head]
    assert not client.decoder.header_table.dynamic_entries


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "view of bytes", "view of bytearray"])
def test_a_body_of_several_frames_arrives_whole(kind: str) -> None:
    front = FrontConnection(now=0.0)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.increment_flow_control_window(1 << 20)
    client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.send_headers(1, REQUEST, end_stream=True)
    front.receive(client.data_to_send(), 0.0)
    client.receive_data(front.data_to_send())
    front.receive(client.data_to_send(), 0.0)  # the SETTINGS ack, the windows
    body = bytes(range(256)) * 400  # 100 KiB: 7 DATA frames
    assert front.send_response(1, 200, [(b"content-length", b"102400")])
    buffer = bytearray(body) if kind.endswith("bytearray") else body
    given = memoryview(buffer)[:] if kind.startswith("view") else buffer
    assert front.send_body(1, given, end_stream=True) == len(body)
    if isinstance(buffer, bytearray):  # the caller may reuse its buffer at once
        buffer[:] = bytes(len(buffer))
    events = client.receive_data(front.data_to_send())
    received = b"".join(e.data for e in events if type(e).__name__ == "DataReceived")  # type: ignore[attr-defined]
    assert received == body
    assert [type(e).__name__ for e in events][-1] == "StreamEnded"
    assert front.conn.streams.get(1) is None or front.conn.streams[1].closed
