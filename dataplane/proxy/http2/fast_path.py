"""HEADERS and DATA frames without hyperframe's per-frame work, on h2's own state.

A callgrind/cProfile profile of HTTP/2 small responses (bench/instructions --compare h2) put
about half of the `h2` layer's time on the sending side: for each response, h2 builds a
hyperframe `HeadersFrame` and `DataFrame` (each with its `Flags` set), re-encodes the fields
(`utf8_encode_headers`), scans them for a 1xx status, builds validation flags it does not use
(our configuration validates nothing outbound), logs twice, then serializes every frame.

`send_headers` and `send_data` do the same protocol work with less: the same stream state
transitions (`process_input`, so h2's stream knows what was sent: responses, trailers,
END_STREAM, who closed it), the same flow-control bookkeeping (both windows), the same HPACK
encoder, and the frame header (RFC 9113 4.1) packed with `struct`. They only take the common
case, and return False for h2's own methods to do the rest, unchanged:

- the connection is open (h2's SEND_HEADERS and SEND_DATA are no-ops in that state; in any
  other it raises, which h2 keeps doing),
- the stream exists and is open or half-closed (remote),
- headers: a server's final response head (no 1xx, which h2 tracks apart), or trailers after
  a head was sent (either side; a request head, which opens its stream, stays with h2),
- data: no padding, within both windows and the peer's frame size (the caller checks).

A header block larger than the peer's SETTINGS_MAX_FRAME_SIZE goes out as HEADERS plus
CONTINUATION frames, split as h2 splits it.

On the way in, the same profile put hyperframe's parsing of each request's HEADERS frame
(a `Flags` set, padding and priority fields, two memoryview copies) and h2's count of open
streams (two properties per stream, per new stream) at about a tenth of the worker:

- `headers_frame` makes the `HeadersFrame` hyperframe would make from a frame with neither
  padding nor priority (END_HEADERS set: a whole block), for h2 to receive as ever;
- `open_streams` is h2's `_open_streams` (count the open streams of one side, forget the
  closed ones) reading each stream's state once.
"""

from __future__ import annotations

from struct import Struct
from typing import TYPE_CHECKING

from h2.connection import ConnectionState
from h2.stream import STREAM_OPEN, StreamInputs, StreamState
from hyperframe.flags import Flags
from hyperframe.frame import HeadersFrame

if TYPE_CHECKING:
    from h2.stream import H2Stream

    from dataplane.proxy.http2.events import Fields
    from dataplane.proxy.http2.flood import GuardedConnection

_HEADER = Struct(">LBL")  # (length << 8 | type), flags, stream id: 9 bytes
_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_OPEN_STATES = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
_CONNECTION_OPEN = (ConnectionState.SERVER_OPEN, ConnectionState.CLIENT_OPEN)
_SEND_HEADERS = StreamInputs.SEND_HEADERS
_SEND_END_STREAM = StreamInputs.SEND_END_STREAM
_pack = _HEADER.pack
_CLOSED = StreamState.CLOSED
UNCOPIED = 1024  # DATA payloads from this size are queued apart from their frame header
_HEADERS_FLAGS = {flag.name for flag in HeadersFrame.defined_flags}  # never changed
_PADDED_OR_PRIORITY = 0x08 | 0x20


def _open_stream(conn: GuardedConnection, stream_id: int) -> H2Stream | None:
    """The stream, if it and its connection are open for us to send on; None: leave it to h2."""
    if conn.state_machine.state not in _CONNECTION_OPEN:
        return None
    stream = conn.streams.get(stream_id)
    if stream is None or stream.state_machine.state not in _OPEN_STATES:
        return None
    return stream


def send_headers(conn: GuardedConnection, stream_id: int, fields: Fields, end_stream: bool) -> bool:
    """A server's final response head (`:status` first) or trailers: False when h2's
    `send_headers` must do it (not open, a 1xx, a request head)."""
    stream = _open_stream(conn, stream_id)
    if stream is None:
        return False
    machine = stream.state_machine
    if (
        not machine.headers_sent
        and (
            machine.client is not False  # a server's stream (h2: `client` is False on those)
            or not fields
            or fields[0][0] != b":status"
            or fields[0][1][:1] == b"1"  # informational
        )
    ):
        return False
    machine.process_input(_SEND_HEADERS)  # response_sent: first the head, then trailers
    block = conn.encoder.encode(fields)
    if end_stream:
        machine.process_input(_SEND_END_STREAM)
    elif machine.trailers_sent:
        from h2.exceptions import ProtocolError

        raise ProtocolError("Trailers must have END_STREAM set.")  # as h2 says it
    stream.request_method = None  # what h2 reads from a response head (no :method)
    flags = _END_STREAM if end_stream else 0
    size = len(block)
    limit = conn.max_outbound_frame_size
    append = conn._frames.append
    if size <= limit:
        append(_pack(size << 8 | _HEADERS, flags | _END_HEADERS, stream_id) + block)
        return True
    append(_pack(limit << 8 | _HEADERS, flags, stream_id) + block[:limit])
    for start in range(limit, size, limit):
        piece = block[start : start + limit]
        last = _END_HEADERS if start + limit >= size else 0
        append(_pack(len(piece) << 8 | _CONTINUATION, last, stream_id) + piece)
    return True


def send_data(
    conn: GuardedConnection, stream_id: int, data: bytes | memoryview, end_stream: bool
) -> bool:
    """One DATA frame (`len(data)` within both windows and the frame size, checked by the
    caller): False when h2's `send_data` must do it (not open). A memoryview must be of an
    immutable `bytes` (it is joined with the other frames in `data_to_send`)."""
    stream = _open_stream(conn, stream_id)  # SEND_DATA leaves its state as it is
    if stream is None:
        return False
    machine = stream.state_machine
    if end_stream:
        machine.process_input(_SEND_END_STREAM)
    size = len(data)
    stream.outbound_flow_control_window -= size
    conn.outbound_flow_control_window -= size
    header = _pack(size << 8 | _DATA, _END_STREAM if end_stream else 0, stream_id)
    if size >= UNCOPIED:
        conn._frames += (header, data)
    else:
        conn._frames.append(header + data)
    return True


def headers_frame(flags: int, stream_id: int, payload: bytes) -> HeadersFrame | None:
    """The `HeadersFrame` hyperframe parses from a HEADERS frame (`payload`: its body), or
    None when hyperframe must parse it (padding, priority, a block continued, stream 0)."""
    if flags & _PADDED_OR_PRIORITY or not flags & _END_HEADERS or not stream_id:
        return None
    marks = Flags.__new__(Flags)
    marks._valid_flags = _HEADERS_FLAGS  # hyperframe's own: a set of the frame's flag names
    marks._flags = {"END_HEADERS", "END_STREAM"} if flags & _END_STREAM else {"END_HEADERS"}
    frame = HeadersFrame.__new__(HeadersFrame)
    frame.stream_id = stream_id
    frame.flags = marks
    frame.body_len = len(payload)
    frame.pad_length = 0
    frame.depends_on = 0
    frame.stream_weight = 0
    frame.exclusive = False
    frame.data = payload
    return frame


def open_streams(conn: GuardedConnection, remainder: int) -> int:
    """h2's `_open_streams`: the open streams whose id % 2 is `remainder`; closed streams
    are forgotten (their ids kept in `_closed_streams`, with who closed them)."""
    count = 0
    closed = None
    streams = conn.streams
    for stream_id, stream in streams.items():
        state = stream.state_machine.state
        if state is _CLOSED:
            if closed is None:
                closed = [stream_id]
            else:
                closed.append(stream_id)
        elif STREAM_OPEN[state] and stream_id % 2 == remainder:
            count += 1
    if closed is not None:
        forgotten = conn._closed_streams
        for stream_id in closed:
            forgotten[stream_id] = streams.pop(stream_id).state_machine.stream_closed_by
    return count
