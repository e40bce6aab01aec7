"""Flood and abuse limits of one HTTP/2 connection, counted on frame headers as they arrive.

`h2` parses frames and keeps the protocol's state; it does not count. `MonitoredBuffer`
(h2's frame buffer) hands every frame header to `FloodMonitor.frame()` before h2 parses the
frame, so each CONTINUATION is seen one by one (h2 merges them), an over-long frame is refused
as soon as its header arrives (h2 waits for the whole frame first), and control frames with a
wrong length get FRAME_SIZE_ERROR. A limit crossed raises `FloodError`, an h2 ProtocolError
carrying its code: h2 then sends the GOAWAY itself and the endpoint reports it. A whole HEADERS
block is then made into h2's frame object without hyperframe's parsing, and a plain request
opens its stream without h2's state machine (both in `fast_receive`).

`GuardedConnection` is h2's connection with two changes: a stream beyond
MAX_CONCURRENT_STREAMS is refused with RST_STREAM(REFUSED_STREAM) (h2 would end the whole
connection), and after a final graceful GOAWAY every new stream is refused that way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from h2.connection import ConnectionState, H2Connection, _decode_headers
from h2.errors import ErrorCodes
from h2.events import StreamReset, TrailersReceived
from h2.exceptions import (
    FrameTooLargeError,
    InvalidBodyLengthError,
    ProtocolError,
    StreamClosedError,
    StreamIDTooLowError,
)
from h2.frame_buffer import FrameBuffer
from h2.stream import StreamClosedBy
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from dataplane.proxy.http2.fast_path import UNCOPIED
from dataplane.proxy.http2.fast_receive import headers_frame, open_streams, receive_request
from dataplane.proxy.http2.limits import WINDOW_SECONDS

_HPACK_FAILURES = (HPACKError, IndexError, TypeError, UnicodeDecodeError)  # as h2 catches them

if TYPE_CHECKING:
    from h2.config import H2Configuration
    from h2.events import Event as H2Event

    from dataplane.proxy.http2.counters import H2Counters
    from dataplane.proxy.http2.limits import H2Limits

_CALM = ErrorCodes.ENHANCE_YOUR_CALM
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
# Exact payload lengths of the fixed-size control frames (RFC 9113 section 6).
_FIXED_LENGTH = {2: 5, 3: 4, 6: 8, 8: 4}
_KNOWN_TYPES = frozenset(range(10)) | {0xA, 0x10}  # ALTSVC, PRIORITY_UPDATE


MAX_CREDIT = 1024  # unanswered DATA frames remembered (see FloodMonitor.window_credit)


class FloodError(ProtocolError):
    """A limit was crossed: h2 answers with a GOAWAY carrying `error_code`."""

    def __init__(self, kind: str, error_code: ErrorCodes, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # the `h2.flood.violation.<kind>` counter, or a frame-size reason
        self.error_code = error_code


class FloodMonitor:
    """The per-connection counters. `now` is set by the endpoint before each receive."""

    def __init__(self, limits: H2Limits, counters: H2Counters, now: float) -> None:
        self.limits = limits
        self.counters = counters
        self.now = now
        self.window_start = now
        self.rst = self.ping = self.settings = self.empty_data = self.window_update0 = 0
        self.glitches = 0
        self.rst_lifetime = self.abusive_lifetime = self.emitted_lifetime = 0
        self.ping_lifetime = self.settings_lifetime = 0
        self.continuations = 0
        self.block_size = 0
        self.streams: dict[int, object] = {}  # h2's streams, to tell live streams apart
        self.answered: set[int] | None = None  # front side: streams whose response started
        # DATA frames we sent (endpoint.data_sent) and the peer has not answered with a
        # stream-0 WINDOW_UPDATE or a PING yet: a receiver replenishing the window it used
        # (or a gRPC client probing the bandwidth-delay product with a PING per burst of
        # data) is no flood.
        self.window_credit = self.ping_credit = 0

    def _roll(self) -> None:
        elapsed = self.now - self.window_start
        if elapsed >= WINDOW_SECONDS:
            shift = min(int(elapsed / WINDOW_SECONDS), 31)
            self.rst >>= shift
            self.ping >>= shift
            self.settings >>= shift
            self.empty_data >>= shift
            self.window_update0 >>= shift
            self.glitches >>= shift
            self.window_start = self.now

    def _violation(self, kind: str, detail: str) -> FloodError:
        return FloodError(kind, _CALM, detail)

    def frame(self, kind: int, flags: int, stream_id: int, length: int) -> None:
        """One frame header, before h2 parses the frame; raises FloodError."""
        limits = self.limits
        if kind == 0:  # DATA
            if length == 0 and not flags & _END_STREAM:
                self._roll()
                self.empty_data += 1
                if self.empty_data > limits.max_empty_data_per_window:
                    raise self._violation("empty_data_window", "empty DATA flood")
            stream = self.streams.get(stream_id)
            if stream is None or stream.closed:  # type: ignore[attr-defined]
                self.glitch()
            return
        if kind == 1 or kind == 5:  # HEADERS, PUSH_PROMISE: a new header block
            self.continuations = 0
            self.block_size = length
            if length > limits.max_header_list_size:
                raise self._violation("header_size_per_block", "header block too large")
            return
        if kind == 9:  # CONTINUATION
            self.continuations += 1
            self.block_size += length
            if self.continuations > limits.max_continuation_frames:
                raise self._violation("continuation_per_block", "CONTINUATION flood")
            if self.block_size > limits.max_header_list_size:
                raise self._violation("header_size_per_block", "header block too large")
            return
        expected = _FIXED_LENGTH.get(kind)
        if expected is not None and length != expected:
            raise FloodError("frame_size", ErrorCodes.FRAME_SIZE_ERROR, f"frame type {kind}")
        if kind == 8:  # WINDOW_UPDATE
            if stream_id == 0:
                if self.window_credit:
                    self.window_credit -= 1  # an answer to our DATA
                    return
                self._roll()
                self.window_update0 += 1
                if self.window_update0 > limits.max_window_update_stream0_per_window:
                    raise self._violation("window_update_stream0_window", "WINDOW_UPDATE flood")
        elif kind == 3:  # RST_STREAM
            self._received_reset(stream_id)
        elif kind == 4:  # SETTINGS
            self._settings(flags, length)
        elif kind == 6:  # PING
            if not flags & _ACK and self.ping_credit:
                self.ping_credit -= 1  # a bandwidth probe after our DATA
                return
            self._roll()
            self.ping += 1
            self.ping_lifetime += 1
            if self.ping > limits.max_ping_per_window:
                raise self._violation("ping_window", "PING flood")
            if self.ping_lifetime > limits.max_ping_lifetime:
                raise self._violation("ping_lifetime", "PING lifetime cap")
        elif kind == 7:  # GOAWAY
            if length < 8:
                raise FloodError("frame_size", ErrorCodes.FRAME_SIZE_ERROR, "short GOAWAY")
        elif kind == 2 or kind not in _KNOWN_TYPES:  # PRIORITY (deprecated), unknown types
            self.glitch()

    def _settings(self, flags: int, length: int) -> None:
        if flags & _ACK:
            if length:
                raise FloodError("frame_size", ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK body")
        elif length % 6:
            raise FloodError("frame_size", ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS length")
        elif length > 6 * self.limits.max_settings_entries:
            raise self._violation("settings_entries", "too many SETTINGS entries")
        self._roll()
        self.settings += 1
        self.settings_lifetime += 1
        if self.settings > self.limits.max_settings_per_window:
            raise self._violation("settings_window", "SETTINGS flood")
        if self.settings_lifetime > self.limits.max_settings_lifetime:
            raise self._violation("settings_lifetime", "SETTINGS lifetime cap")

    def _received_reset(self, stream_id: int) -> None:
        limits = self.limits
        self._roll()
        self.rst += 1
        self.rst_lifetime += 1
        if self.rst > limits.max_rst_stream_per_window:
            raise self._violation("rst_stream_window", "RST_STREAM flood (rapid reset)")
        if self.rst_lifetime > limits.max_rst_stream_lifetime:
            raise self._violation("rst_stream_lifetime", "RST_STREAM lifetime cap")
        answered = self.answered
        if answered is not None and stream_id not in answered:
            stream = self.streams.get(stream_id)
            if stream is not None and not stream.closed:  # type: ignore[attr-defined]
                self.counters.bump("h2.rst_stream.received.pre_response_start")
                self.abusive_lifetime += 1
                if self.abusive_lifetime > limits.max_rst_stream_abusive_lifetime:
                    raise self._violation(
                        "rst_stream_pre_response_lifetime", "resets before any response"
                    )

    def glitch(self, count: int = 1) -> None:
        """A protocol anomaly (frame for a closed stream, refused or malformed stream...)."""
        self._roll()
        self.glitches += count
        if self.glitches > self.limits.max_glitch_count:
            raise self._violation("glitch_window", "too many protocol anomalies")

    def emitted_reset(self) -> None:
        """We reset a stream because of what the peer sent (CVE-2025-8671 MadeYouReset)."""
        self.emitted_lifetime += 1
        if self.emitted_lifetime > self.limits.max_rst_stream_emitted_lifetime:
            raise self._violation("rst_stream_emitted_lifetime", "too many provoked resets")


class MonitoredBuffer(FrameBuffer):
    """h2's frame buffer, showing each frame header to a FloodMonitor first."""

    def __init__(self, monitor: FloodMonitor, server: bool) -> None:
        super().__init__(server=server)
        self.monitor = monitor

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= 9:
            length = (data[0] << 16) | (data[1] << 8) | data[2]
            if length > self.max_frame_size:
                raise FrameTooLargeError(f"frame of {length} bytes announced")
            if len(data) >= length + 9:
                stream_id = ((data[5] & 0x7F) << 24) | (data[6] << 16) | (data[7] << 8) | data[8]
                kind, flags = data[3], data[4]
                self.monitor.frame(kind, flags, stream_id, length)
                if kind == 1 and not self._headers_buffer:  # see fast_receive.headers_frame
                    frame = headers_frame(flags, stream_id, bytes(data[9 : 9 + length]))
                    if frame is not None:
                        del data[: 9 + length]
                        return frame
        return super().__next__()


class GuardedConnection(H2Connection):
    """h2's connection, refusing streams beyond the limit instead of ending the connection."""

    def __init__(self, config: H2Configuration, monitor: FloodMonitor, stream_limit: int) -> None:
        super().__init__(config)
        self.incoming_buffer = MonitoredBuffer(monitor, server=not config.client_side)
        monitor.streams = self.streams  # type: ignore[assignment]
        self.monitor = monitor
        self.stream_limit = stream_limit
        self.refuse_new = False  # after a final GOAWAY
        self._frames: list[bytes | memoryview] = []  # serialized frames not handed out yet

    # Output: frames are kept as a list and joined once when handed out (h2 appends each to
    # a bytearray, then copies it out: two more copies of every body byte).

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        append = self._frames.append
        for frame in frames:
            if type(frame) is DataFrame and len(frame.data) >= UNCOPIED and not frame.pad_length:
                # hyperframe copies a body twice to serialize it: the header alone is
                # serialized here (the frame without its data, then its length), the body
                # is kept as it is and joined once in data_to_send.
                data = frame.data
                frame.data = b""
                header = frame.serialize()
                frame.data = data
                size = frame.body_len = len(data)
                append(size.to_bytes(3, "big") + header[3:])
                append(data)
            else:
                append(frame.serialize())

    def data_to_send(self, amount: int | None = None) -> bytes:
        frames = self._frames
        if frames:
            if self._data_to_send:  # written by h2 directly (the preface): it goes first
                frames.insert(0, bytes(self._data_to_send))
                self._data_to_send = bytearray()
            data = bytes(frames[0]) if len(frames) == 1 else b"".join(frames)
            frames.clear()
            if amount is None:
                return data
            self._data_to_send = bytearray(data)
        return super().data_to_send(amount)

    def frames_to_send(self) -> list[bytes | memoryview]:
        """What `data_to_send()` would join, as its pieces in order (for a socket that
        gathers them itself: no copy of the bodies)."""
        frames = self._frames
        if self._data_to_send:
            frames.insert(0, bytes(self._data_to_send))
            self._data_to_send = bytearray()
        self._frames = []
        return frames

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[H2Event]]:
        """h2's, then a graceful GOAWAY leaves the connection open at once, not only when the
        endpoint handles its event (endpoint._on_goaway): the frames that came after it in
        the same read (a WINDOW_UPDATE the finishing streams need) are not a protocol error."""
        result = super()._receive_goaway_frame(frame)
        if not frame.error_code:
            self.state_machine.state = (
                ConnectionState.CLIENT_OPEN
                if self.config.client_side
                else ConnectionState.SERVER_OPEN
            )
        return result

    def _receive_frame(self, frame: Frame) -> list[H2Event]:
        """h2's own, less its trace line: it built `repr(frame)` for every frame received,
        logged or not (2% of the worker under h2load). Same dispatch, same errors."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as error:
            if not self._stream_is_closed_by_reset(error.stream_id):
                raise
            reset = RstStreamFrame(error.stream_id)
            reset.error_code = error.error_code
            self._prepare_for_sending([reset])
            return error._events
        except StreamIDTooLowError as error:
            if self._stream_is_closed_by_reset(error.stream_id):
                reset = RstStreamFrame(error.stream_id)
                reset.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([reset])
                return []
            if self._stream_is_closed_by_end(error.stream_id):
                raise StreamClosedError(error.stream_id) from error
            raise
        self._prepare_for_sending(frames)
        return events  # type: ignore[no-any-return]

    def _open_streams(self, remainder: int) -> int:
        return open_streams(self, remainder)  # h2's, faster (fast_receive.py)

    def clear_outbound_data_buffer(self) -> None:
        self._frames.clear()
        super().clear_outbound_data_buffer()

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[H2Event]]:
        stream_id = frame.stream_id
        if (
            not self.config.__dict__["_client_side"]  # its property's value, without a call
            and stream_id not in self.streams
            and stream_id > self.highest_inbound_stream_id
            and stream_id & 1
            and (
                self.refuse_new
                # len(streams) bounds the open ones: count them only when it might matter
                or (
                    len(self.streams) >= self.stream_limit
                    and self.open_inbound_streams >= self.stream_limit
                )
            )
        ):
            _decode_headers(self.decoder, frame.data)  # keeps the HPACK table in step
            self.highest_inbound_stream_id = stream_id
            self._closed_streams[stream_id] = StreamClosedBy.SEND_RST_STREAM
            reset = RstStreamFrame(stream_id)
            reset.error_code = ErrorCodes.REFUSED_STREAM
            counters = self.monitor.counters
            counters.bump("h2.streams.refused")
            counters.rst_sent(ErrorCodes.REFUSED_STREAM)
            if not self.refuse_new:
                self.monitor.glitch()
            return [reset], []
        stream = self.streams.get(stream_id)  # trailers make h2 forget the expected length
        expected = None if stream is None else stream._expected_content_length
        try:
            if stream is None:  # a new stream: a plain request is opened by fast_receive
                opened = receive_request(self, frame)
                if opened is not None:
                    return [], opened
            frames, events = super()._receive_headers_frame(frame)
        except ProtocolError as error:
            # h2 reports an HPACK decoding failure as PROTOCOL_ERROR; RFC 9113 4.3 wants
            # COMPRESSION_ERROR (an oversized list stays a DenialOfServiceError).
            if isinstance(error.__cause__, _HPACK_FAILURES) and not isinstance(
                error.__cause__, OversizedHeaderListError
            ):
                error.error_code = ErrorCodes.COMPRESSION_ERROR
            raise
        if (
            expected is not None
            and stream is not None
            and events
            and isinstance(events[0], TrailersReceived)
            and expected != stream._actual_content_length
        ):
            return self._reset_malformed(stream_id, 0)  # a body shorter than its length
        return frames, events

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Frame], list[H2Event]]:
        try:
            return super()._receive_data_frame(frame)
        except InvalidBodyLengthError:
            return self._reset_malformed(frame.stream_id, frame.flow_controlled_length)

    def _reset_malformed(self, stream_id: int, flow: int) -> tuple[list[Frame], list[H2Event]]:
        """A body that disagrees with its Content-Length is malformed: RFC 9113 8.1.1 makes
        that a stream error (h2 ends the connection). The stream is reset, the connection
        window gets the frame's bytes back, and the session hears of it as a reset."""
        frames: list[Frame] = list(self.streams[stream_id].reset_stream(ErrorCodes.PROTOCOL_ERROR))
        increment = self._inbound_flow_control_window_manager.process_bytes(flow) if flow else 0
        if increment:
            update = WindowUpdateFrame(0)
            update.window_increment = increment
            frames.append(update)
        self.monitor.glitch()
        self.monitor.emitted_reset()
        reset = StreamReset(
            stream_id=stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
        )
        return frames, [reset]
