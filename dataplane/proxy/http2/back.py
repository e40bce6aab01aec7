"""The client side of one h2c (prior knowledge) connection to a backend of an `http2` cluster.

    back = BackConnection(limits, counters, now)     # queues the preface and SETTINGS
    if back.can_open():
        stream_id = back.open_stream(b"GET", b"http", b"example.com", b"/", fields, True)
    for event in back.receive(read(), now): ...      # ResponseHead, Body, Trailers, ...

One connection carries up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS streams (100 until
its SETTINGS arrive). A GOAWAY from the backend makes it `reusable` no more: streams at or
below its last_stream_id finish, those above are reported as StreamReset(REFUSED_STREAM,
remote=True) and may be retried on another connection. A backend that does not acknowledge
our SETTINGS within `settings_timeout` gets GOAWAY(SETTINGS_TIMEOUT).
"""

from __future__ import annotations

from typing import Final

from h2 import events as h2e
from h2.errors import ErrorCodes

from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.endpoint import Endpoint
from dataplane.proxy.http2.events import (
    ConnectionClosed,
    Event,
    Fields,
    Informational,
    ResponseHead,
    StreamReset,
)
from dataplane.proxy.http2.fields import Malformed, parse_response
from dataplane.proxy.http2.limits import H2Limits

HIGHEST_STREAM_ID: Final = 2**31 - 1
_UNTIL_SETTINGS = 100  # streams opened before the backend told its limit


class BackConnection(Endpoint):
    CLIENT_SIDE = True

    def __init__(
        self, limits: H2Limits | None = None, counters: H2Counters | None = None, now: float = 0.0
    ) -> None:
        super().__init__(limits or H2Limits(), counters, now)
        self.opened_at = now
        self.going_away = False
        self.settings_acked = False
        self.remote_settings_seen = False
        self._heads: set[int] = set()  # streams whose final response head arrived
        self._handlers[h2e.ResponseReceived] = self._on_response
        self._handlers[h2e.InformationalResponseReceived] = self._on_informational
        self._handlers[h2e.SettingsAcknowledged] = self._on_settings_ack
        self._handlers[h2e.RemoteSettingsChanged] = self._on_remote_settings

    # Opening streams -------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """May new streams still go on this connection (no GOAWAY, not closed)?"""
        return not (self.closed or self.going_away)

    def can_open(self) -> bool:
        """True when a new stream fits: reusable and under the backend's concurrency limit."""
        if self.closed or self.going_away:
            return False
        conn = self.conn
        limit = conn.remote_settings.max_concurrent_streams
        if not self.remote_settings_seen:
            limit = min(limit, _UNTIL_SETTINGS)
        if conn.highest_outbound_stream_id + 2 > HIGHEST_STREAM_ID:
            return False
        return len(self.active) < limit and conn.open_outbound_streams < limit

    def open_stream(
        self,
        method: bytes,
        scheme: bytes,
        authority: bytes,
        path: bytes,
        fields: Fields,
        end_stream: bool,
    ) -> int:
        """Send a request head on a new stream; returns its id. Check `can_open()` first."""
        if not self.can_open():
            raise RuntimeError("no stream can be opened on this backend connection")
        conn = self.conn
        stream_id = conn.get_next_available_stream_id()
        headers = [
            (b":method", method),
            (b":scheme", scheme),
            (b":authority", authority),
            (b":path", path),
            *fields,
        ]
        conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.active[stream_id] = self.monitor.now
        return stream_id

    # Receiving -------------------------------------------------------------------------

    def _on_response(self, event: h2e.ResponseReceived, out: list[Event], now: float) -> None:
        stream_id = event.stream_id
        if stream_id not in self.active:
            return
        try:
            status, fields, length = parse_response(
                event.headers,
                self.limits.max_header_fields,
            )
        except Malformed as error:
            self._reject(stream_id, error, out)
            return
        self._heads.add(stream_id)
        self.active[stream_id] = now
        ended = event.stream_ended is not None
        out.append(ResponseHead(stream_id, status, fields, ended, length))
        if ended:
            self._check_closed(stream_id)

    def _on_informational(
        self, event: h2e.InformationalResponseReceived, out: list[Event], now: float
    ) -> None:
        stream_id = event.stream_id
        if stream_id not in self.active:
            return
        try:
            status, fields, _length = parse_response(
                event.headers,
                self.limits.max_header_fields,
            )
        except Malformed as error:
            self._reject(stream_id, error, out)
            return
        self.active[stream_id] = now
        out.append(Informational(stream_id, status, fields))

    def _on_settings_ack(
        self, event: h2e.SettingsAcknowledged, out: list[Event], now: float
    ) -> None:
        self.settings_acked = True

    def _on_remote_settings(
        self, event: h2e.RemoteSettingsChanged, out: list[Event], now: float
    ) -> None:
        self.remote_settings_seen = True
        self._on_settings(event, out, now)

    def _peer_going_away(self, last_stream_id: int, out: list[Event]) -> None:
        self.going_away = True
        dropped = sorted(stream_id for stream_id in self.active if stream_id > last_stream_id)
        for stream_id in dropped:  # never processed (RFC 9113 6.8): no RST_STREAM needed
            del self.active[stream_id]
            self._forget(stream_id)
            out.append(StreamReset(stream_id, ErrorCodes.REFUSED_STREAM, True))

    def _forget(self, stream_id: int) -> None:
        self._heads.discard(stream_id)

    def responded(self, stream_id: int) -> bool:
        """Did the final response head of `stream_id` arrive (else a retry is safe-ish)?"""
        return stream_id in self._heads

    # Time and closing ------------------------------------------------------------------

    def expired(self, now: float) -> list[Event]:
        out = super().expired(now)
        if (
            not self.closed
            and not self.settings_acked
            and now - self.opened_at >= self.limits.settings_timeout
        ):
            self.conn.close_connection(ErrorCodes.SETTINGS_TIMEOUT)
            out.extend(self._died(ErrorCodes.SETTINGS_TIMEOUT, None, "SETTINGS not acknowledged"))
        return out

    def next_deadline(self) -> float | None:
        """The streams' idle deadline, or sooner the SETTINGS acknowledgement's."""
        deadline = super().next_deadline()
        if self.settings_acked or self.closed:
            return deadline
        acked_by = self.opened_at + self.limits.settings_timeout
        return acked_by if deadline is None else min(deadline, acked_by)

    def close(self) -> None:
        """Say goodbye (GOAWAY NO_ERROR), e.g. when the pool drops an idle connection."""
        if not self.closed:
            self.conn.close_connection(ErrorCodes.NO_ERROR)
            self.counters.goaway_sent(ErrorCodes.NO_ERROR)
            self.closed = True
            self.active.clear()

    @property
    def idle(self) -> bool:
        return not self.active


__all__ = ["BackConnection", "ConnectionClosed"]
