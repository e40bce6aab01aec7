"""The server side of one HTTP/2 client connection (after TLS ALPN `h2`, or h2c).

    front = FrontConnection(limits, counters, now)   # queues our SETTINGS
    write(front.data_to_send())
    for event in front.receive(read(), now): ...     # RequestHead, Body, Trailers, ...
    front.send_response(stream_id, 200, [(b"content-type", b"text/plain")])
    taken = front.send_body(stream_id, data, end_stream=True)
    front.consumed(stream_id, len(body.data))       # once a Body was forwarded

Graceful shutdown is sozu's double GOAWAY: `shutdown(now)` sends GOAWAY(2^31-1) and a PING;
the PING's answer (or a second) brings the final GOAWAY naming the last stream taken, after
which new streams are refused. `expired(now)` ends the connection when
`graceful_shutdown_deadline` passes (0: never). `done` tells when nothing is left to do.
"""

from __future__ import annotations

from h2 import events as h2e
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, PingFrame

from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.endpoint import NO_ERROR, Endpoint
from dataplane.proxy.http2.events import ConnectionClosed, Event, Fields, RequestHead
from dataplane.proxy.http2.fast_path import send_headers
from dataplane.proxy.http2.fields import Malformed, parse_request
from dataplane.proxy.http2.limits import H2Limits

_SHUTDOWN_PING = b"pysozu\x00\x01"
_RTT_CAP = 1.0  # the final GOAWAY goes at the latest this long after the first
_STATUS = {status: str(status).encode() for status in range(100, 600)}


class FrontConnection(Endpoint):
    CLIENT_SIDE = False

    def __init__(
        self, limits: H2Limits | None = None, counters: H2Counters | None = None, now: float = 0.0
    ) -> None:
        super().__init__(limits or H2Limits(), counters, now)
        self.answered: set[int] = set()
        self.monitor.answered = self.answered
        self.shutdown_started: float | None = None
        self.final_goaway_sent = False
        self._handlers[h2e.RequestReceived] = self._on_request
        self._handlers[h2e.PingAckReceived] = self._on_ping_ack

    def _on_request(self, event: h2e.RequestReceived, out: list[Event], now: float) -> None:
        stream_id = event.stream_id
        try:
            method, scheme, authority, path, fields, length = parse_request(
                event.headers,
                self.limits.max_header_fields,
            )
        except Malformed as error:
            self._reject(stream_id, error, out)
            return
        ended = event.stream_ended is not None
        if ended and length:
            self._reject(stream_id, Malformed("content_length"), out)
            return
        self.active[stream_id] = now
        out.append(RequestHead(stream_id, method, scheme, authority, path, fields, ended, length))

    def send_response(
        self, stream_id: int, status: int, fields: Fields, end_stream: bool = False
    ) -> bool:
        """Send a response head (a 1xx is informational: a final one must follow).

        Field names must be lowercase and carry no connection-specific field
        (`translate.h1_response_to_h2` makes them so). False when the stream is gone.
        """
        if not self._can_send(stream_id):
            return False
        self.answered.add(stream_id)
        headers = [(b":status", _STATUS.get(status) or str(status).encode()), *fields]
        if status < 200 or not send_headers(self.conn, stream_id, headers, end_stream):
            self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.active[stream_id] = self.monitor.now
        if end_stream:
            self._check_closed(stream_id)
        return True

    def _forget(self, stream_id: int) -> None:
        self.answered.discard(stream_id)

    # Shutdown --------------------------------------------------------------------------

    def shutdown(self, now: float) -> None:
        """Begin the graceful shutdown (soft stop): first GOAWAY, then a PING."""
        if self.shutdown_started is not None or self.closed:
            return
        self.shutdown_started = now
        self._queue(
            GoAwayFrame(0, last_stream_id=2**31 - 1, error_code=NO_ERROR),
            PingFrame(0, opaque_data=_SHUTDOWN_PING),
        )
        self.counters.goaway_sent(NO_ERROR)

    def goodbye(self) -> None:
        """End an idle connection now: one GOAWAY(NO_ERROR) naming the last stream taken."""
        if self.closed:
            return
        self.conn.close_connection(NO_ERROR, last_stream_id=self.conn.highest_inbound_stream_id)
        self.counters.goaway_sent(NO_ERROR)
        self.closed = True

    def _final_goaway(self) -> None:
        if self.final_goaway_sent or self.closed:
            return
        self.final_goaway_sent = True
        self.conn.refuse_new = True
        last = self.conn.highest_inbound_stream_id
        self._queue(GoAwayFrame(0, last_stream_id=last, error_code=NO_ERROR))
        self.counters.goaway_sent(NO_ERROR)

    def _on_ping_ack(self, event: h2e.PingAckReceived, out: list[Event], now: float) -> None:
        if event.ping_data == _SHUTDOWN_PING and self.shutdown_started is not None:
            self._final_goaway()

    @property
    def done(self) -> bool:
        """Closed, or shut down with the final GOAWAY sent and no stream left."""
        return self.closed or (self.final_goaway_sent and not self.active)

    def expired(self, now: float) -> list[Event]:
        """Idle streams reset; the shutdown's final GOAWAY and deadline."""
        out = super().expired(now)
        started = self.shutdown_started
        if started is None or self.closed:
            return out
        if now - started >= _RTT_CAP:
            self._final_goaway()
        deadline = self.limits.graceful_shutdown_deadline
        if deadline and now - started >= deadline and self.active:
            self.conn.close_connection(NO_ERROR, last_stream_id=self.conn.highest_inbound_stream_id)
            self.counters.goaway_sent(NO_ERROR)
            self.counters.bump("h2.connection.shutdown_deadline")
            self.closed = True
            self.active.clear()
            self.answered.clear()
            out.append(ConnectionClosed(ErrorCodes.NO_ERROR, "graceful shutdown deadline"))
        return out

    def next_deadline(self) -> float | None:
        deadline = super().next_deadline()
        started = self.shutdown_started
        if started is not None and not self.closed:
            steps = [started + _RTT_CAP] if not self.final_goaway_sent else []
            if self.limits.graceful_shutdown_deadline:
                steps.append(started + self.limits.graceful_shutdown_deadline)
            if deadline is not None:
                steps.append(deadline)
            return min(steps) if steps else None
        return deadline
