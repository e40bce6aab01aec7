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

The sending side sets the state machine's fields as `process_input` would for the states
`_open_stream` lets through (`_sent_headers`, `_sent_end_stream`), and asks `process_input`
for the rest. The receiving side's fast path is `fast_receive.py`.
"""

from __future__ import annotations

from struct import Struct
from typing import TYPE_CHECKING, Final

from h2.connection import ConnectionState
from h2.exceptions import ProtocolError
from h2.stream import (
    H2Stream,
    H2StreamStateMachine,
    StreamClosedBy,
    StreamInputs,
    StreamState,
)

from dataplane.proxy.http2.hpack_cache import CachedEncoder
from dataplane.proxy.http2.hpack_fields import encode_fields

if TYPE_CHECKING:
    from dataplane.proxy.http2.events import Fields
    from dataplane.proxy.http2.flood import GuardedConnection

_HEADER: Final = Struct(">LBL")  # (length << 8 | type), flags, stream id: 9 bytes
_DATA: Final = 0x0
_HEADERS: Final = 0x1
_CONTINUATION: Final = 0x9
_END_STREAM: Final = 0x1
_END_HEADERS: Final = 0x4
_OPEN_STATES: Final = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
_CONNECTION_OPEN: Final = (ConnectionState.SERVER_OPEN, ConnectionState.CLIENT_OPEN)
_SEND_HEADERS: Final = StreamInputs.SEND_HEADERS
_SEND_END_STREAM: Final = StreamInputs.SEND_END_STREAM
_pack: Final = _HEADER.pack
_CLOSED: Final = StreamState.CLOSED
_OPEN: Final = StreamState.OPEN
_HALF_CLOSED_LOCAL: Final = StreamState.HALF_CLOSED_LOCAL
_HALF_CLOSED_REMOTE: Final = StreamState.HALF_CLOSED_REMOTE
_BY_SEND_END_STREAM: Final = StreamClosedBy.SEND_END_STREAM
UNCOPIED: Final = 1024  # DATA payloads from this size are queued apart from their frame header


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
    _sent_headers(machine)
    encoder = conn.encoder
    if type(encoder) is CachedEncoder and encoder.announced:
        block = encode_fields(encoder, fields)  # its encode(), less an interpreted call
    else:
        block = encoder.encode(fields)
    if end_stream:
        _sent_end_stream(machine)
    elif machine.trailers_sent:
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
    if end_stream:
        _sent_end_stream(stream.state_machine)
    size = len(data)
    stream.outbound_flow_control_window -= size
    conn.outbound_flow_control_window -= size
    header = _pack(size << 8 | _DATA, _END_STREAM if end_stream else 0, stream_id)
    if size >= UNCOPIED:
        conn._frames += (header, data)
    else:
        conn._frames.append(header + data)
    return True


def send_body(
    conn: GuardedConnection, stream_id: int, data: bytes | memoryview, end_stream: bool
) -> int:
    """`Endpoint.send_body`'s frames in one call (`send_data` per frame, less its stream
    lookup and window bookkeeping each time): as much of `data` as both windows allow, in DATA
    frames of at most the peer's frame size, END_STREAM on the last when `end_stream` and all
    of `data` was taken. The bytes taken; -1 (nothing done) when h2 must do it (not open).
    `data`: bytes, or a view of bytes (its frames may be views of it)."""
    stream = _open_stream(conn, stream_id)
    if stream is None:
        return -1
    size = len(data)
    window = conn.outbound_flow_control_window
    stream_window = stream.outbound_flow_control_window
    if stream_window < window:
        window = stream_window
    taken = size if size <= window else max(window, 0)
    last = end_stream and taken == size
    if not taken and not last:
        return 0
    frames = conn._frames
    limit = conn.max_outbound_frame_size
    if taken <= limit:
        piece = data if taken == size else data[:taken]
        header = _pack(taken << 8 | _DATA, _END_STREAM if last else 0, stream_id)
        if taken >= UNCOPIED:
            frames.append(header)
            frames.append(piece)
        else:
            frames.append(header + piece)
    else:
        view = memoryview(data)
        full = _pack(limit << 8 | _DATA, 0, stream_id)  # the header of each whole frame
        position = 0
        while position < taken:
            end = position + limit
            header = full
            if end >= taken:
                end = taken
                header = _pack((end - position) << 8 | _DATA, _END_STREAM if last else 0, stream_id)
            if end - position >= UNCOPIED:
                frames.append(header)
                frames.append(view[position:end])
            else:
                frames.append(header + view[position:end])
            position = end
    stream.outbound_flow_control_window = stream_window - taken
    conn.outbound_flow_control_window -= taken
    if last:
        _sent_end_stream(stream.state_machine)
    return taken


def _sent_headers(machine: H2StreamStateMachine) -> None:
    """`process_input(SEND_HEADERS)` on an open or half-closed (remote) stream, whose `client`
    is False when no head was sent yet: h2's `response_sent`, first the head, then trailers
    (a second set of trailers is h2's to refuse)."""
    if not machine.headers_sent:
        machine.headers_sent = True
    elif machine.trailers_sent:
        machine.process_input(_SEND_HEADERS)  # raises ProtocolError, closing the stream
    else:
        machine.trailers_sent = True


def _sent_end_stream(machine: H2StreamStateMachine) -> None:
    """`process_input(SEND_END_STREAM)` on an open or half-closed (remote) stream."""
    if machine.state is _HALF_CLOSED_REMOTE:
        machine.state = _CLOSED
        machine.stream_closed_by = _BY_SEND_END_STREAM
    elif machine.state is _OPEN:
        machine.state = _HALF_CLOSED_LOCAL
    else:
        machine.process_input(_SEND_END_STREAM)
