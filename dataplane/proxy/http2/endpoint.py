"""What both ends of an HTTP/2 connection share: setup, receiving, flow control, resets.

`Endpoint` wraps a `GuardedConnection` (h2) and turns h2's events into the neutral ones of
`events`. Flow control gives back-pressure: received body bytes are credited back to the
peer only when the session calls `consumed()`, so a peer can never have more unconsumed bytes
in flight than the connection window (`initial_connection_window`, 1 MiB by default). Sending
is bounded the other way: `send_body` takes only what the peer's windows allow and says how
much; a `Sendable` event tells when to offer the rest.

Streams the session knows are kept in `active` (stream id -> time of last activity) until both
directions ended or the stream was reset; `expired(now)` resets those idle longer than
`stream_idle_timeout` (RST_STREAM(CANCEL), `h2.streams.reaped.idle`): this is what frees a
stream stalled on a zero window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Final

from h2 import events as h2e
from h2.config import H2Configuration
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.exceptions import DenialOfServiceError, FrameTooLargeError, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame, PingFrame

from dataplane.proxy.http2 import fast_path
from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.events import (
    Body,
    ConnectionClosed,
    Event,
    Fields,
    GoAwayReceived,
    Sendable,
    StreamReset,
    Trailers,
)
from dataplane.proxy.http2.fields import Malformed, check_trailers
from dataplane.proxy.http2.flood import MAX_CREDIT, FloodError, FloodMonitor, GuardedConnection
from dataplane.proxy.http2.hpack_cache import CachedDecoder, CachedEncoder
from dataplane.proxy.http2.limits import H2Limits

DEFAULT_WINDOW: Final = 65_535
NO_ERROR: Final = ErrorCodes.NO_ERROR
CANCEL: Final = ErrorCodes.CANCEL
Handler = Callable[[Any, list[Event], float], None]


class Endpoint:
    CLIENT_SIDE: ClassVar[bool]

    def __init__(self, limits: H2Limits, counters: H2Counters | None, now: float) -> None:
        self.limits = limits
        self.counters = counters if counters is not None else H2Counters()
        self.monitor = monitor = FloodMonitor(limits, self.counters, now)
        client = self.CLIENT_SIDE
        config = H2Configuration(
            client_side=client,
            header_encoding=None,
            validate_inbound_headers=False,  # fields.py checks heads, per stream
            normalize_inbound_headers=False,  # cookie crumbs stay apart (translate joins)
            validate_outbound_headers=False,
            normalize_outbound_headers=False,  # our fields are lowercase and trimmed already
        )
        conn = GuardedConnection(config, monitor, limits.max_concurrent_streams)
        conn.encoder = CachedEncoder()
        conn.decoder = CachedDecoder(limits.max_header_list_size)
        settings: dict[SettingCodes, int] = {
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_stream_window,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        }
        if client:
            settings[SettingCodes.ENABLE_PUSH] = 0
        conn.local_settings = Settings(client=client, initial_values=settings)
        conn.max_inbound_frame_size = limits.max_frame_size
        conn.decoder.max_header_list_size = limits.max_header_list_size
        conn.initiate_connection()
        if limits.initial_connection_window > DEFAULT_WINDOW:
            conn.increment_flow_control_window(limits.initial_connection_window - DEFAULT_WINDOW)
        self.conn = conn
        self.active: dict[int, float] = {}
        self.closed = False  # no frame will be sent or read any more
        self._out = bytearray()  # frames built here, queued after what h2 held before them
        self._handlers: dict[type, Handler] = {
            h2e.DataReceived: self._on_data,
            h2e.TrailersReceived: self._on_trailers,
            h2e.StreamReset: self._on_reset,
            h2e.WindowUpdated: self._on_window,
            h2e.RemoteSettingsChanged: self._on_settings,
            h2e.ConnectionTerminated: self._on_goaway,
        }

    # Receiving -------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the peer; returns the events they make."""
        if self.closed:
            return []
        self.monitor.now = now
        try:
            h2_events = self.conn.receive_data(data)
        except FloodError as error:
            return self._died(error.error_code, error.kind, str(error))
        except ProtocolError as error:
            kind = None
            if isinstance(error, DenialOfServiceError):
                kind = "header_size_per_block"
            elif isinstance(error, FrameTooLargeError):
                kind = "frame_size"
            return self._died(error.error_code or ErrorCodes.PROTOCOL_ERROR, kind, str(error))
        out: list[Event] = []
        handlers = self._handlers
        try:
            for event in h2_events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event, out, now)
        except FloodError as error:
            self.conn.close_connection(error.error_code)
            return self._died(error.error_code, error.kind, str(error))
        return out

    def _died(self, code: int, kind: str | None, reason: str) -> list[Event]:
        self.closed = True
        counters = self.counters
        counters.goaway_sent(code)
        if kind is not None:
            counters.bump("h2.flood.violation." + kind)
        for stream_id in self.active:
            self._forget(stream_id)
        self.active.clear()
        return [ConnectionClosed(int(code), reason)]

    def _on_data(self, event: h2e.DataReceived, out: list[Event], now: float) -> None:
        stream_id = event.stream_id
        data = event.data
        flow = event.flow_controlled_length
        if stream_id not in self.active:  # a stream we refused or reset: give the window back
            if flow:
                self.conn.acknowledge_received_data(flow, stream_id)
            return
        if flow > len(data):  # padding is never forwarded: credit it now
            self.conn.acknowledge_received_data(flow - len(data), stream_id)
        self.active[stream_id] = now
        ended = event.stream_ended is not None
        if data or ended:
            out.append(Body(stream_id, data, ended))
        if ended:
            self._check_closed(stream_id)

    def _on_trailers(self, event: h2e.TrailersReceived, out: list[Event], now: float) -> None:
        stream_id = event.stream_id
        if stream_id not in self.active:
            return
        try:
            fields = check_trailers(event.headers, self.limits.max_header_fields)
        except Malformed as error:
            self._reject(stream_id, error, out)
            return
        self.active[stream_id] = now
        out.append(Trailers(stream_id, fields))
        self._check_closed(stream_id)

    def _on_reset(self, event: h2e.StreamReset, out: list[Event], now: float) -> None:
        stream_id = event.stream_id
        code = int(event.error_code or 0)
        if event.remote_reset:
            self.counters.rst_received(code)
        else:
            self.counters.rst_sent(code)
        if self.active.pop(stream_id, None) is not None:
            self._forget(stream_id)
            out.append(StreamReset(stream_id, code, event.remote_reset))

    def _on_window(self, event: h2e.WindowUpdated, out: list[Event], now: float) -> None:
        stream_id = event.stream_id or 0
        if stream_id == 0 or stream_id in self.active:
            if stream_id:
                self.active[stream_id] = now
            out.append(Sendable(stream_id))

    def _on_settings(self, event: h2e.RemoteSettingsChanged, out: list[Event], now: float) -> None:
        changed = event.changed_settings
        table = changed.get(SettingCodes.HEADER_TABLE_SIZE)
        if table is not None and table.new_value > self.limits.max_header_table_size:
            self.conn.encoder.header_table_size = self.limits.max_header_table_size
        if SettingCodes.INITIAL_WINDOW_SIZE in changed or (
            SettingCodes.MAX_CONCURRENT_STREAMS in changed
        ):
            out.append(Sendable(0))

    def _on_goaway(self, event: h2e.ConnectionTerminated, out: list[Event], now: float) -> None:
        code = int(event.error_code or 0)
        self.counters.goaway_received(code)
        last = event.last_stream_id if event.last_stream_id is not None else 0
        out.append(GoAwayReceived(code, last, event.additional_data or b""))
        if code == NO_ERROR:
            # h2 stops all sending once a GOAWAY arrived; RFC 9113 6.8 lets the streams the
            # peer did process finish, so the connection is put back in its open state.
            self.conn.state_machine.state = (
                ConnectionState.CLIENT_OPEN if self.CLIENT_SIDE else ConnectionState.SERVER_OPEN
            )
            self._peer_going_away(last, out)
        else:
            self.closed = True
            self.active.clear()
            out.append(ConnectionClosed(code, "the peer sent GOAWAY"))

    def _peer_going_away(self, last_stream_id: int, out: list[Event]) -> None:
        """A graceful GOAWAY from the peer (the back side reports streams it dropped)."""

    def _reject(self, stream_id: int, error: Malformed, out: list[Event]) -> None:
        """A malformed head or trailers: RST_STREAM, counted; may raise FloodError."""
        self.counters.header_rejected(error.reason)
        was_active = stream_id in self.active
        self.reset(stream_id, error.code)
        if was_active:
            out.append(StreamReset(stream_id, error.code, False))
        self.monitor.glitch()
        self.monitor.emitted_reset()

    # Sending ---------------------------------------------------------------------------

    def sendable(self, stream_id: int) -> int:
        """How many body bytes `stream_id` may send now (0 when it is gone)."""
        conn = self.conn
        stream = conn.streams.get(stream_id)
        if stream is None or stream.closed or self.closed:
            return 0
        return max(0, min(conn.outbound_flow_control_window, stream.outbound_flow_control_window))

    def send_body(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> int:
        """Send what the windows allow of `data`; returns how many bytes were taken.

        `end_stream` applies only when all of `data` was taken. Offer the rest after a
        `Sendable` event for this stream (or for 0). A memoryview of `bytes` is queued as it
        is; any other (of a buffer its owner may reuse) is copied, as a bytearray is.
        """
        if self.closed:
            return 0
        body: bytes | memoryview  # frames are queued as views: of immutable bytes only
        if isinstance(data, bytes) or (isinstance(data, memoryview) and type(data.obj) is bytes):
            body = data
        else:
            body = bytes(data)
        data = body
        conn = self.conn
        size = len(data)
        taken = fast_path.send_body(conn, stream_id, data, end_stream)
        if taken >= 0:  # the usual case: an open stream (else h2's own way, below)
            if taken:
                data_sent(self.monitor, -(-taken // conn.max_outbound_frame_size))
                self.active[stream_id] = self.monitor.now
            if end_stream and taken == size:
                self._check_closed(stream_id)
            return taken
        if not self._can_send(stream_id):
            return 0
        taken = min(size, self.sendable(stream_id))
        if taken == 0:
            if end_stream and size == 0:
                if not fast_path.send_data(conn, stream_id, b"", True):
                    conn.end_stream(stream_id)
                self._check_closed(stream_id)
            return 0
        frame = conn.max_outbound_frame_size
        if taken <= frame:
            piece = data if taken == size else data[:taken]
            last = end_stream and taken == size
            if not fast_path.send_data(conn, stream_id, piece, last):
                conn.send_data(stream_id, bytes(piece), last)
            data_sent(self.monitor, 1)
        else:
            data_sent(self.monitor, -(-taken // frame))
            view = memoryview(data)  # of immutable bytes: its frames may be views of it
            position = 0
            while position < taken:
                chunk = min(frame, taken - position)
                last = end_stream and position + chunk == size
                chunk_view = view[position : position + chunk]
                if not fast_path.send_data(conn, stream_id, chunk_view, last):
                    conn.send_data(stream_id, bytes(chunk_view), last)
                position += chunk
        self.active[stream_id] = self.monitor.now
        if end_stream and taken == size:
            self._check_closed(stream_id)
        return taken

    def send_trailers(self, stream_id: int, fields: Fields) -> bool:
        """Send trailer fields (lowercase names), which end the stream."""
        if not self._can_send(stream_id):
            return False
        if not fast_path.send_headers(self.conn, stream_id, fields, True):
            self.conn.send_headers(stream_id, fields, end_stream=True)
        self._check_closed(stream_id)
        return True

    def end_stream(self, stream_id: int) -> bool:
        """End our side of the stream with an empty DATA frame."""
        if not self._can_send(stream_id):
            return False
        if not fast_path.send_data(self.conn, stream_id, b"", True):
            self.conn.end_stream(stream_id)
        self._check_closed(stream_id)
        return True

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        """RST_STREAM `stream_id` (no-op when it is already closed)."""
        stream = self.conn.streams.get(stream_id)
        self.active.pop(stream_id, None)
        self._forget(stream_id)
        if stream is None or stream.closed or self.closed:
            return
        self.conn.reset_stream(stream_id, code)
        self.counters.rst_sent(code)

    def consumed(self, stream_id: int, size: int) -> None:
        """`size` bytes of a Body of `stream_id` were forwarded: give the peer that window."""
        if size > 0 and not self.closed:
            self.conn.acknowledge_received_data(size, stream_id)

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer now (empty when there is nothing)."""
        if self._out:
            data = bytes(self._out) + self.conn.data_to_send()
            self._out = bytearray()
            return data
        return self.conn.data_to_send()

    def pieces_to_send(self) -> list[bytes | memoryview]:
        """`data_to_send()`'s bytes as pieces in order (views: of immutable bytes), for a
        socket that gathers them (sendmsg): a body is written without being copied."""
        pieces = self.conn.frames_to_send()
        if self._out:
            pieces.insert(0, bytes(self._out))
            self._out = bytearray()
        return pieces

    def _queue(self, *frames: GoAwayFrame | PingFrame) -> None:
        self._out += self.conn.data_to_send()
        for frame in frames:
            self._out += frame.serialize()

    def _can_send(self, stream_id: int) -> bool:
        stream = self.conn.streams.get(stream_id)
        return stream is not None and not stream.closed and not self.closed

    def _check_closed(self, stream_id: int) -> None:
        stream = self.conn.streams.get(stream_id)
        if stream is None or stream.closed:
            self.active.pop(stream_id, None)
            self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        """A stream is over: drop what the subclass keeps about it."""

    # Time ------------------------------------------------------------------------------

    def expired(self, now: float) -> list[Event]:
        """Reset streams idle for longer than `stream_idle_timeout` (zero-window stalls)."""
        self.monitor.now = now
        if self.closed:
            return []
        out: list[Event] = []
        limit = now - self.limits.stream_idle_timeout
        stale = [stream_id for stream_id, last in self.active.items() if last <= limit]
        for stream_id in stale:
            self.reset(stream_id, CANCEL)
            self.counters.bump("h2.streams.reaped.idle")
            out.append(StreamReset(stream_id, CANCEL, False))
        return out

    def next_deadline(self) -> float | None:
        """When `expired()` next has work (None: no open stream)."""
        if not self.active or self.closed:
            return None
        return min(self.active.values()) + self.limits.stream_idle_timeout


def data_sent(monitor: FloodMonitor, frames: int) -> None:
    """`frames` DATA frames went to the peer (see `FloodMonitor.window_credit`): compiled
    here, as a call into the monitor's interpreted code costs more than this does."""
    credit = monitor.window_credit + frames
    monitor.window_credit = credit if credit < MAX_CREDIT else MAX_CREDIT
    credit = monitor.ping_credit + frames
    monitor.ping_credit = credit if credit < MAX_CREDIT else MAX_CREDIT
