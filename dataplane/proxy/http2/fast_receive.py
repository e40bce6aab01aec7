"""HEADERS frames of requests received without hyperframe's and h2's per-frame work, on
h2's own state (the sending side is `fast_path.py`).

A callgrind profile of HTTP/2 small responses (bench/instructions --compare h2) put
hyperframe's parsing of each request's HEADERS frame
(a `Flags` set, padding and priority fields, two memoryview copies) and h2's count of open
streams (two properties per stream, per new stream) at about a tenth of the worker:

- `headers_frame` makes the `HeadersFrame` hyperframe would make from a frame with neither
  padding nor priority (END_HEADERS set: a whole block), for h2 to receive as ever;
- `open_streams` is h2's `_open_streams` (count the open streams of one side, forget the
  closed ones) reading each stream's state once.

A py-spy profile of the worker under h2load (h2c, -c10 -m10, small responses) then put h2's
handling of each request's HEADERS frame at a fifth of the worker's samples: a third of it
in `receive_headers` (two state machine inputs, each an Enum-keyed lookup, an informational
check, validation flags it does not use, a copy of the fields), a third in creating the stream
(three debug log calls, one building `streams.keys()`). `receive_request` does the same for
the plain case (a server's new stream, no PRIORITY, inbound fields neither validated nor
normalized, as our endpoints configure h2): the same concurrency check and closed-stream
bookkeeping (`open_streams`), the same HPACK decoder, h2's own `H2Stream`, then the state,
flags and events h2's state machine gives a request (OPEN, or HALF_CLOSED_REMOTE with
END_STREAM; `RequestReceived`, `StreamEnded`) and h2's own content-length check.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, cast

from h2.connection import ConnectionState, _decode_headers
from h2.events import RequestReceived, StreamEnded
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from h2.stream import (
    H2Stream,
    H2StreamStateMachine,
    StreamState,
)
from h2.utilities import SizeLimitDict
from h2.windows import LARGEST_FLOW_CONTROL_WINDOW, WindowManager
from hpack import Decoder
from hyperframe.flags import Flags
from hyperframe.frame import HeadersFrame

from dataplane.proxy.http2.hpack_cache import CachedDecoder, CountedTable

if TYPE_CHECKING:
    from h2.events import Event as H2Event

    from dataplane.proxy.http2.flood import GuardedConnection

_END_STREAM: Final = 0x1
_END_HEADERS: Final = 0x4
_CLOSED: Final = StreamState.CLOSED
_OPEN: Final = StreamState.OPEN
_HALF_CLOSED_LOCAL: Final = StreamState.HALF_CLOSED_LOCAL
_HALF_CLOSED_REMOTE: Final = StreamState.HALF_CLOSED_REMOTE
_SERVER_OPEN: Final = ConnectionState.SERVER_OPEN
_INITIAL_WINDOW_SIZE: Final = SettingCodes.INITIAL_WINDOW_SIZE
_MAX_CONCURRENT_STREAMS: Final = SettingCodes.MAX_CONCURRENT_STREAMS
_HEADERS_FLAGS: Final = {flag.name for flag in HeadersFrame.defined_flags}  # never changed
_PADDED_OR_PRIORITY: Final = 0x08 | 0x20
_remember: Final = OrderedDict.__setitem__  # h2's SizeLimitDict, less its size check per item


# The attributes of h2's H2StreamStateMachine and H2Stream for a request just received, in
# the order their __init__ sets them; receive_request fills in each stream's own (None here).
_MACHINE: Final[dict[str, object]] = {
    "state": None,
    "stream_id": None,
    "client": False,
    "headers_sent": None,
    "trailers_sent": None,
    "headers_received": True,
    "trailers_received": None,
    "stream_closed_by": None,
}
_STREAM: Final[dict[str, object]] = {
    "state_machine": None,
    "stream_id": None,
    "max_outbound_frame_size": None,
    "request_method": None,
    "outbound_flow_control_window": None,
    "_inbound_window_manager": None,
    "_expected_content_length": None,
    "_actual_content_length": 0,
    "_authority": None,
    "config": None,
}


def receive_request(conn: GuardedConnection, frame: HeadersFrame) -> list[H2Event] | None:
    """h2's `_receive_headers_frame` for a client's request opening a new stream: its events;
    None (nothing done) when h2 must do it (see the module's docstring)."""
    stream_id = frame.stream_id
    config = conn.config
    options = config.__dict__  # what its properties return, read without interpreted calls
    flags = frame.flags._flags
    if (
        options["_client_side"]
        or "PRIORITY" in flags
        or not stream_id & 1
        or stream_id <= conn.highest_inbound_stream_id
        or stream_id in conn.streams
        # RECV_HEADERS leaves SERVER_OPEN as it is (the first request, in IDLE, is h2's)
        or conn.state_machine.state is not _SERVER_OPEN
        or options["_validate_inbound_headers"]
        or options["_normalize_inbound_headers"]
        or options["_header_encoding"] is not None
    ):
        return None
    local = conn.local_settings
    window = _setting(local, _INITIAL_WINDOW_SIZE)
    # h2's concurrency check (TooManyStreamsError is h2's to raise), forgetting closed streams;
    # a window WindowManager would refuse (an assertion) is h2's too
    if (
        open_streams(conn, 1) + 1 > _setting(local, _MAX_CONCURRENT_STREAMS)
        or window > LARGEST_FLOW_CONTROL_WINDOW
    ):
        return None
    headers = decoded(conn.decoder, frame.data)
    end_stream = "END_STREAM" in flags
    outbound = _setting(conn.remote_settings, _INITIAL_WINDOW_SIZE)
    if _informational(headers):  # a request claiming a 1xx status: h2 refuses it
        stream = H2Stream(stream_id, config, window, outbound)
        stream.max_outbound_frame_size = conn.max_outbound_frame_size
        conn.streams[stream_id] = stream
        conn.highest_inbound_stream_id = stream_id
        return stream.receive_headers(headers, end_stream, None)[1]
    # _begin_new_stream, less its debug lines: H2Stream(...) as its __init__ makes it, with the
    # state receive_headers gives it: RECV_HEADERS (IDLE -> OPEN, request_received), then
    # RECV_END_STREAM (OPEN -> HALF_CLOSED_REMOTE, stream_half_closed)
    machine = H2StreamStateMachine.__new__(H2StreamStateMachine)
    attributes = _MACHINE.copy()  # a copy of a small dict: cheaper than building one
    attributes["state"] = _HALF_CLOSED_REMOTE if end_stream else _OPEN
    attributes["stream_id"] = stream_id
    machine.__dict__ = attributes
    manager = WindowManager.__new__(WindowManager)
    manager.__dict__ = {
        "max_window_size": window,
        "current_window_size": window,
        "_bytes_processed": 0,
    }
    stream = H2Stream.__new__(H2Stream)
    attributes = _STREAM.copy()
    attributes["state_machine"] = machine
    attributes["stream_id"] = stream_id
    attributes["max_outbound_frame_size"] = conn.max_outbound_frame_size
    attributes["outbound_flow_control_window"] = outbound
    attributes["_inbound_window_manager"] = manager
    attributes["config"] = config
    stream.__dict__ = attributes
    conn.streams[stream_id] = stream
    conn.highest_inbound_stream_id = stream_id
    length = _content_length(headers)  # h2's _initialize_content_length (may raise)
    if length is not None:
        stream._expected_content_length = length
    ended: StreamEnded | None = None
    if end_stream:
        ended = StreamEnded.__new__(StreamEnded)
        ended.__dict__ = {"stream_id": stream_id}
    event = RequestReceived.__new__(RequestReceived)
    event.__dict__ = {
        "stream_id": stream_id,
        "headers": list(headers),
        "stream_ended": ended,
        "priority_updated": None,
    }
    return [event] if ended is None else [event, ended]


def decoded(decoder: Decoder, data: bytes) -> Iterable[tuple[bytes, bytes]]:
    """h2's `_decode_headers(decoder, data)`: a block a CachedDecoder remembers is read here
    as its `decode` reads it (the table unchanged since: a copy of the remembered fields),
    without two interpreted calls; any other block is decoded by h2's function."""
    if type(decoder) is CachedDecoder:
        table = cast(CountedTable, decoder.header_table)
        if (table.generation, decoder.max_header_list_size) == decoder._state:
            fields = decoder._blocks.get(data)
            if fields is not None:
                return list(fields)
    return _decode_headers(decoder, data)


def _setting(settings: Settings, code: SettingCodes) -> int:
    """`settings[code]` (h2's properties), read without two Python calls."""
    value: int | None = settings._settings[code][0]
    return settings[code] if value is None else value  # None: h2's KeyError


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """h2's `_initialize_content_length` for a request (no method known yet): the length
    its content-length fields agree on, with h2's errors."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                raise ProtocolError(f"Invalid content-length header: {value!r}")
            try:
                parsed = int(value, 10)
            except ValueError as error:
                raise ProtocolError(f"Invalid content-length header: {value!r}") from error
            if length is None:
                length = parsed
            elif parsed != length:
                raise ProtocolError(f"Conflicting content-length headers: {length} and {parsed}")
    return length


def _informational(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """h2's `is_informational_response`: a `:status` 1xx among the pseudo-fields."""
    for name, value in headers:
        if name[:1] != b":":
            return False
        if name == b":status":
            return value[:1] == b"1"
    return False


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
        elif (  # h2's STREAM_OPEN[state]: exactly these three states
            state is _OPEN or state is _HALF_CLOSED_REMOTE or state is _HALF_CLOSED_LOCAL
        ) and stream_id % 2 == remainder:
            count += 1
    if closed is not None:
        # h2's SizeLimitDict checks its size after each item; once after all of them leaves
        # the same items (the oldest go first either way)
        forgotten = cast(SizeLimitDict, conn._closed_streams)
        for stream_id in closed:
            _remember(forgotten, stream_id, streams.pop(stream_id).state_machine.stream_closed_by)
        limit = forgotten._size_limit
        if limit is not None:
            while len(forgotten) > limit:
                forgotten.popitem(last=False)
    return count
