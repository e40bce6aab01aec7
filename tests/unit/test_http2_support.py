"""Helpers for the HTTP/2 core tests (no tests here): in-memory peers, raw frames.

`Pair` joins a FrontConnection to a real client-side h2 connection, `BackPair` a
BackConnection to a real server-side one; `RawClient` writes hand-made frames (hyperframe,
hpack) for hostile input h2 would never produce.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.settings
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from dataplane.proxy.http2 import BackConnection, Event, FrontConnection, H2Counters, H2Limits
from dataplane.proxy.http2.events import ConnectionClosed

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com"), (":path", "/")]


def request(path: str = "/", method: str = "GET", **extra: str) -> list[tuple[str, str]]:
    head = [(":method", method), (":scheme", "https"), (":authority", "example.com")]
    head.append((":path", path))
    head.extend((name.replace("_", "-"), value) for name, value in extra.items())
    return head


class Pair:
    """A FrontConnection and a real h2 client, bytes moved by `exchange()`."""

    def __init__(self, limits: H2Limits | None = None, now: float = 0.0) -> None:
        self.now = now
        self.counters = H2Counters()
        self.front = FrontConnection(limits, self.counters, now)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.initiate_connection()
        self.exchange()

    def exchange(self) -> tuple[list[Event], list[Any]]:
        """Move bytes both ways until both sides are quiet."""
        front_events: list[Event] = []
        client_events: list[Any] = []
        for _ in range(50):
            to_front = self.client.data_to_send()
            if to_front:
                front_events += self.front.receive(to_front, self.now)
            to_client = self.front.data_to_send()
            if to_client:
                client_events += self.client.receive_data(to_client)
            if not to_front and not to_client:
                break
        return front_events, client_events

    def open(self, headers: list[tuple[str, str]] | None = None, end: bool = True) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, headers or GET, end_stream=end)
        return stream_id


class BackPair:
    """A BackConnection and a real h2 server (an h2c backend)."""

    def __init__(self, limits: H2Limits | None = None, max_streams: int = 100) -> None:
        self.now = 0.0
        self.counters = H2Counters()
        self.back = BackConnection(limits, self.counters, self.now)
        config = h2.config.H2Configuration(
            client_side=False, normalize_outbound_headers=False, validate_outbound_headers=False
        )
        self.server = h2.connection.H2Connection(config)
        self.server.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams},
        )
        self.server.initiate_connection()
        self.exchange()

    def exchange(self) -> tuple[list[Event], list[Any]]:
        back_events: list[Event] = []
        server_events: list[Any] = []
        for _ in range(50):
            to_server = self.back.data_to_send()
            if to_server:
                server_events += self.server.receive_data(to_server)
            to_back = self.server.data_to_send()
            if to_back:
                back_events += self.back.receive(to_back, self.now)
            if not to_server and not to_back:
                break
        return back_events, server_events


class RawClient:
    """Hand-made client frames into a FrontConnection."""

    def __init__(self, limits: H2Limits | None = None, now: float = 0.0) -> None:
        self.counters = H2Counters()
        self.front = FrontConnection(limits, self.counters, now)
        self.front.data_to_send()
        self.encoder = Encoder()
        self.now = now
        self.events = self.send(PREFACE + SettingsFrame(0).serialize())

    def send(self, *parts: bytes | Frame) -> list[Event]:
        data = b"".join(part if isinstance(part, bytes) else part.serialize() for part in parts)
        return self.front.receive(data, self.now)

    def headers(self, stream_id: int, fields: list[tuple[str, str]], end: bool = True) -> Frame:
        frame = HeadersFrame(stream_id, self.encoder.encode(fields))
        frame.flags.add("END_HEADERS")
        if end:
            frame.flags.add("END_STREAM")
        return frame

    def block(self, stream_id: int, fields: list[tuple[str, str]], pieces: int) -> list[Frame]:
        """A header block cut into a HEADERS and `pieces - 1` CONTINUATION frames."""
        data = self.encoder.encode(fields)
        size = max(1, len(data) // pieces)
        cuts = [data[i * size : (i + 1) * size] for i in range(pieces - 1)]
        cuts.append(data[(pieces - 1) * size :])
        frames: list[Frame] = [HeadersFrame(stream_id, cuts[0], flags=["END_STREAM"])]
        frames += [ContinuationFrame(stream_id, cut) for cut in cuts[1:]]
        frames[-1].flags.add("END_HEADERS")
        return frames

    def data(self, stream_id: int, payload: bytes, end: bool = False) -> Frame:
        return DataFrame(stream_id, payload, flags=["END_STREAM"] if end else [])

    def output(self) -> list[Frame]:
        """Every frame the front sent so far."""
        self.sent += self.front.data_to_send()
        return frames(self.sent)

    sent = b""

    def goaway(self) -> tuple[int, int]:
        """(error code, last stream id) of the last GOAWAY the front sent."""
        found = [frame for frame in self.output() if isinstance(frame, GoAwayFrame)]
        assert found, "no GOAWAY sent"
        return found[-1].error_code, found[-1].last_stream_id

    def resets(self) -> dict[int, int]:
        """stream id -> error code of each RST_STREAM the front sent."""
        return {
            frame.stream_id: frame.error_code
            for frame in self.output()
            if isinstance(frame, RstStreamFrame)
        }


def frames(data: bytes) -> list[Frame]:
    """Parse a stream of frames (no preface)."""
    out: list[Frame] = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        out.append(frame)
        view = view[9 + length :]
    return out


def closed(events: list[Event]) -> ConnectionClosed:
    found = [event for event in events if isinstance(event, ConnectionClosed)]
    assert found, events
    return found[-1]
