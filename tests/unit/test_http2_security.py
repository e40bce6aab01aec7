"""Hostile input against FrontConnection (raw frames): each flood or malformation gets the
RFC's answer (GOAWAY or RST_STREAM, with its code) and its counter."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from test_http2_support import RawClient, closed, request

from dataplane.proxy.http2 import FrontConnection, H2Limits, RequestHead, StreamReset

CALM = ErrorCodes.ENHANCE_YOUR_CALM


def flood(client: RawClient, frames: list[object]) -> None:
    for frame in frames:
        events = client.send(frame)  # type: ignore[arg-type]
        if any(type(event).__name__ == "ConnectionClosed" for event in events):
            return
    raise AssertionError("no GOAWAY")


def test_rapid_reset_trips_the_pre_response_lifetime_cap() -> None:
    client = RawClient()
    frames = []
    for stream_id in range(1, 2 * 60, 2):
        frames += [client.headers(stream_id, request(), end=False), RstStreamFrame(stream_id, 8)]
    flood(client, frames)
    assert client.goaway()[0] == CALM
    assert client.counters["h2.flood.violation.rst_stream_pre_response_lifetime"] == 1
    assert client.counters["h2.rst_stream.received.pre_response_start"] == 51


def test_rst_stream_per_window_and_half_decay() -> None:
    limits = H2Limits().with_values(max_rst_stream_abusive_lifetime=10_000)
    client = RawClient(limits)
    stream_id = 1
    for now in (0.0, 1.0):  # 60, decayed to 30, +60 = 90: under 100
        client.now = now
        for _ in range(60):
            client.send(
                client.headers(stream_id, request(), end=False), RstStreamFrame(stream_id, 8)
            )
            stream_id += 2
    assert not client.front.closed
    for _ in range(11):
        client.send(RstStreamFrame(stream_id - 2, 8))
    assert client.goaway()[0] == CALM
    assert client.counters["h2.flood.violation.rst_stream_window"] == 1


def test_rst_stream_lifetime_cap() -> None:
    limits = H2Limits().with_values(max_rst_stream_lifetime=5, max_rst_stream_abusive_lifetime=99)
    client = RawClient(limits)
    client.send(client.headers(1, request(), end=False))
    flood(client, [RstStreamFrame(1, 8) for _ in range(6)])
    assert client.counters["h2.flood.violation.rst_stream_lifetime"] == 1


@pytest.mark.parametrize("pieces, closes", [(21, False), (22, True)])
def test_continuation_flood(pieces: int, closes: bool) -> None:
    client = RawClient()
    events = client.send(*client.block(1, request(x_pad="p" * 200), pieces))
    if closes:
        assert closed(events).code == CALM
        assert client.counters["h2.flood.violation.continuation_per_block"] == 1
    else:
        assert isinstance(events[0], RequestHead)


def test_continuation_on_another_stream_is_a_protocol_error() -> None:
    client = RawClient()
    frames = client.block(1, request(), 2)
    frames[1].stream_id = 3
    closed(client.send(*frames))
    assert client.goaway()[0] == ErrorCodes.PROTOCOL_ERROR


def test_standalone_continuation_is_a_protocol_error() -> None:
    client = RawClient()
    closed(client.send(ContinuationFrame(1, b"", flags=["END_HEADERS"])))
    assert client.goaway()[0] == ErrorCodes.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "make, limit, counter",
    [
        (lambda: PingFrame(0, b"12345678"), 100, "ping_window"),
        (lambda: SettingsFrame(0), 50, "settings_window"),
        (lambda: WindowUpdateFrame(0, window_increment=1), 100, "window_update_stream0_window"),
        (lambda: PriorityFrame(1, depends_on=0, stream_weight=16), 100, "glitch_window"),
    ],
)
def test_control_frame_floods(make: object, limit: int, counter: str) -> None:
    client = RawClient()
    client.send(*[make() for _ in range(limit - 1)])  # type: ignore[operator]
    assert not client.front.closed  # the client's first SETTINGS counted too
    flood(client, [make() for _ in range(2)])  # type: ignore[operator]
    assert client.goaway()[0] == CALM
    assert client.counters["h2.flood.violation." + counter] == 1


def test_ping_limit_from_the_listener() -> None:
    client = RawClient(H2Limits().with_values(max_ping_per_window=3))
    flood(client, [PingFrame(0, b"12345678") for _ in range(4)])
    assert client.counters["h2.flood.violation.ping_window"] == 1


def test_empty_data_flood() -> None:
    client = RawClient()
    client.send(client.headers(1, request("/", "POST"), end=False))
    flood(client, [client.data(1, b"") for _ in range(101)])
    assert client.counters["h2.flood.violation.empty_data_window"] == 1
    assert client.goaway()[0] == CALM


def test_hpack_bomb_by_indexed_references() -> None:
    client = RawClient()
    big = ("x-big", "v" * 4000)
    client.send(client.headers(1, [*request(), big]))
    # Each further reference to the table entry is one byte on the wire, 4 KB decoded.
    events = client.send(client.headers(3, [*request(), *([big] * 20)]))
    assert closed(events).code == CALM
    assert client.counters["h2.flood.violation.header_size_per_block"] == 1


def test_header_block_larger_than_the_list_limit_is_refused_early() -> None:
    client = RawClient(H2Limits().with_values(max_header_list_size=4096))
    events = client.send(*client.block(1, request(x_huge="h" * 8000), 4))
    assert closed(events).code == CALM
    assert client.counters["h2.flood.violation.header_size_per_block"] == 1


def test_too_many_header_fields_resets_the_stream() -> None:
    client = RawClient()
    fields = [*request(), *((f"x-{i}", "1") for i in range(130))]
    events = client.send(client.headers(1, fields), client.headers(3, request("/fine")))
    assert [event.path for event in events if isinstance(event, RequestHead)] == [b"/fine"]
    assert client.resets() == {1: CALM}
    assert client.counters["h2.headers.rejected.too_many_fields"] == 1


def test_peer_header_table_size_never_grows_our_encoder_table() -> None:
    client = RawClient()
    client.send(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 2**30}))
    assert client.front.conn.encoder.header_table_size == 0  # no dynamic table, ever
    client.send(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 0}))
    client.send(client.headers(1, request()))
    assert client.front.send_response(1, 200, [(b"x-a", b"b")], end_stream=True)
    assert not client.front.conn.encoder.header_table.dynamic_entries


@pytest.mark.parametrize(
    "frames, code",
    [
        ("3 then 1", ErrorCodes.PROTOCOL_ERROR),  # stream id regression
        ("even", ErrorCodes.PROTOCOL_ERROR),
        ("reuse after close", ErrorCodes.STREAM_CLOSED),
        ("push", ErrorCodes.PROTOCOL_ERROR),
        ("settings ack body", ErrorCodes.FRAME_SIZE_ERROR),
        ("settings length", ErrorCodes.FRAME_SIZE_ERROR),
        ("short ping", ErrorCodes.FRAME_SIZE_ERROR),
        ("short goaway", ErrorCodes.FRAME_SIZE_ERROR),
        ("too many settings", CALM),
        ("window overflow", ErrorCodes.FLOW_CONTROL_ERROR),
        ("data beyond window", ErrorCodes.FLOW_CONTROL_ERROR),
        ("data on idle stream", ErrorCodes.PROTOCOL_ERROR),
    ],
)
def test_connection_errors(frames: str, code: int) -> None:
    client = RawClient()
    h = client.headers
    raw = {
        "3 then 1": lambda: [h(3, request()), h(1, request())],
        "even": lambda: [h(2, request())],
        "reuse after close": lambda: [h(1, request()), h(1, request())],
        "push": lambda: [
            h(1, request(), end=False),
            PushPromiseFrame(1, promised_stream_id=2, flags=["END_HEADERS"]),
        ],
        "settings ack body": lambda: [b"\x00\x00\x06\x04\x01\x00\x00\x00\x00" + bytes(6)],
        "settings length": lambda: [b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + bytes(5)],
        "short ping": lambda: [b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + bytes(7)],
        "short goaway": lambda: [b"\x00\x00\x04\x07\x00\x00\x00\x00\x00" + bytes(4)],
        "too many settings": lambda: [SettingsFrame(0, settings={i: 0 for i in range(100, 165)})],
        "window overflow": lambda: [WindowUpdateFrame(0, window_increment=2**31 - 1)],
        "data beyond window": lambda: [
            h(1, request(), end=False),
            *(client.data(1, b"d" * 16_384) for _ in range(17)),
        ],
        "data on idle stream": lambda: [client.data(1, b"x")],
    }[frames]()
    if frames == "reuse after close":
        client.send(raw[0])
        client.front.send_response(1, 204, [], end_stream=True)
        raw = raw[1:]
    events = client.send(*raw)  # type: ignore[arg-type]
    assert closed(events).code == code
    assert client.goaway()[0] == code
    assert client.front.closed and client.front.receive(b"more", 0.0) == []


def test_headers_on_a_half_closed_stream_reset_it() -> None:
    client = RawClient()
    client.send(client.headers(1, request()))
    events = client.send(client.headers(1, request()))
    assert events == [StreamReset(1, ErrorCodes.STREAM_CLOSED, False)]
    assert client.resets() == {1: ErrorCodes.STREAM_CLOSED}
    assert not client.front.closed


def test_frame_over_max_size_is_refused_from_its_header() -> None:
    client = RawClient()
    events = client.send(b"\x00\x40\x01\x00\x00\x00\x00\x00\x01")  # a 16 KiB + 1 DATA header
    assert closed(events).code == ErrorCodes.FRAME_SIZE_ERROR


def test_stream_window_overflow_resets_the_stream() -> None:
    client = RawClient()
    client.send(client.headers(1, request(), end=False))
    client.send(WindowUpdateFrame(1, window_increment=2**31 - 1))
    assert client.resets() == {1: ErrorCodes.FLOW_CONTROL_ERROR}
    assert not client.front.closed


def test_corrupted_preface() -> None:
    front = FrontConnection()
    events = front.receive(b"PRI * HTTP/1.1\r\n\r\n", 0.0)
    assert closed(events).code == ErrorCodes.PROTOCOL_ERROR


def test_content_length_not_digits_is_a_connection_error() -> None:
    client = RawClient()  # h2 checks Content-Length itself, as a connection error
    closed(client.send(client.headers(1, [*request(), ("content-length", "12a")])))
    assert client.goaway()[0] == ErrorCodes.PROTOCOL_ERROR


def test_content_length_with_end_stream_is_refused() -> None:
    client = RawClient()
    client.send(client.headers(1, request("/", "POST", content_length="5")))
    assert client.resets() == {1: ErrorCodes.PROTOCOL_ERROR}


@pytest.mark.parametrize(("declared", "body"), [("10", b"12345"), ("3", b"12345"), ("0", b"x")])
def test_a_body_that_disagrees_with_content_length_resets_its_stream_only(
    declared: str, body: bytes
) -> None:
    client = RawClient()  # RFC 9113 8.1.1: malformed, a stream error (h2 ends the connection)
    client.send(client.headers(1, request("/", "POST", content_length=declared), end=False))
    events = client.send(DataFrame(1, body, flags=["END_STREAM"]))
    assert [(e.stream_id, e.code) for e in events if isinstance(e, StreamReset)] == [
        (1, ErrorCodes.PROTOCOL_ERROR)
    ]
    assert client.resets() == {1: ErrorCodes.PROTOCOL_ERROR}
    events = client.send(client.headers(3, request("/next")))
    assert [e.stream_id for e in events if isinstance(e, RequestHead)] == [3]


def test_trailers_ending_a_short_body_reset_its_stream() -> None:
    client = RawClient()
    client.send(client.headers(1, request("/", "POST", content_length="10"), end=False))
    client.send(DataFrame(1, b"12345"))
    client.send(client.headers(1, [("x-sum", "1")]))
    assert client.resets() == {1: ErrorCodes.PROTOCOL_ERROR}


MALFORMED = {
    "missing_method": [(":scheme", "https"), (":authority", "a"), (":path", "/")],
    "duplicate_path": [*request(), (":path", "/again")],
    "pseudo_after_regular": [("accept", "*/*"), *request()],
    "unknown_pseudo": [*request(), (":foo", "bar")],
    "protocol_pseudo": [*request(), (":protocol", "websocket")],
    "uppercase": [*request(), ("X-Upper", "1")],
    "empty_name": [*request(), ("", "1")],
    "cr": [*request(), ("x-a", "1\r\nx-b: 2")],
    "lf": [*request(), ("x-a", "1\nx")],
    "nul": [*request(), ("x-a", "1\x00")],
    "leading_space": [*request(), ("x-a", " 1")],
    "connection": [*request(), ("connection", "close")],
    "keep_alive": [*request(), ("keep-alive", "5")],
    "proxy_connection": [*request(), ("proxy-connection", "x")],
    "transfer_encoding": [*request(), ("transfer-encoding", "chunked")],
    "upgrade": [*request(), ("upgrade", "h2c")],
    "te_gzip": [*request(), ("te", "gzip")],
    "host_mismatch": [*request(), ("host", "evil.test")],
    "two_hosts": [*request(), ("host", "example.com"), ("host", "example.com")],
    "fragment": request("/a#b"),
    "relative_path": request("a"),
    "empty_path": request(""),
    "scheme": [(":method", "GET"), (":scheme", "ftp"), (":authority", "a"), (":path", "/")],
    "connect": [(":method", "CONNECT"), (":authority", "a:443")],
    "authority_crlf": [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "a\r\nb"),
        (":path", "/"),
    ],
    "authority_userinfo": [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "u@a"),
        (":path", "/"),
    ],
    "no_authority": [(":method", "GET"), (":scheme", "https"), (":path", "/")],
    "content_length_twice": [*request(), ("content-length", "0"), ("content-length", "0")],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_reset_only_their_stream(name: str) -> None:
    client = RawClient()
    events = client.send(client.headers(1, MALFORMED[name]), client.headers(3, request("/ok")))
    assert [event.path for event in events if isinstance(event, RequestHead)] == [b"/ok"]
    assert client.resets() == {1: ErrorCodes.PROTOCOL_ERROR}
    assert client.counters["h2.headers.rejected.total"] == 1
    assert client.counters["h2.rst_stream.sent.protocol_error"] == 1


def test_case_only_host_duplicate_is_accepted() -> None:
    client = RawClient()
    events = client.send(client.headers(1, [*request(), ("host", "EXAMPLE.com")]))
    assert isinstance(events[0], RequestHead) and events[0].headers == []


def test_malformed_trailers_reset_the_stream() -> None:
    client = RawClient()
    client.send(client.headers(1, request("/", "POST"), end=False))
    events = client.send(client.headers(1, [(":path", "/x")]))
    assert events == [StreamReset(1, ErrorCodes.PROTOCOL_ERROR, False)]
    assert client.counters["h2.headers.rejected.pseudo_in_trailers"] == 1


def test_provoked_resets_have_a_lifetime_cap() -> None:
    """CVE-2025-8671: a client making us reset stream after stream is cut off."""
    limits = H2Limits().with_values(max_rst_stream_emitted_lifetime=5, max_glitch_count=1000)
    client = RawClient(limits)
    flood(client, [client.headers(2 * i + 1, MALFORMED["uppercase"]) for i in range(6)])
    assert client.counters["h2.flood.violation.rst_stream_emitted_lifetime"] == 1
    assert client.goaway()[0] == CALM


def test_malformed_requests_count_as_glitches() -> None:
    client = RawClient()
    flood(client, [client.headers(2 * i + 1, MALFORMED["uppercase"]) for i in range(101)])
    assert client.counters["h2.flood.violation.glitch_window"] == 1


def test_client_goaway_lets_streams_finish() -> None:
    client = RawClient()
    client.send(client.headers(1, request()))
    client.send(GoAwayFrame(0, last_stream_id=0, error_code=0))
    assert client.front.send_response(1, 200, [], end_stream=True)
    assert client.counters["h2.goaway.received.no_error"] == 1


def test_frames_after_a_client_goaway_in_the_same_read_are_no_protocol_error() -> None:
    """A TLS stream hands several records over in one read: a WINDOW_UPDATE the finishing
    stream needs may come with the GOAWAY, which h2 alone would refuse (connection CLOSED)."""
    client = RawClient()
    client.send(
        client.headers(1, request()),
        GoAwayFrame(0, last_stream_id=0, error_code=0),
        WindowUpdateFrame(0, window_increment=1 << 20),
        WindowUpdateFrame(1, window_increment=1 << 20),
    )
    assert not client.front.closed
    assert client.front.send_response(1, 200, [], end_stream=True)


def test_window_updates_and_pings_answering_our_data_are_no_flood() -> None:
    """A gRPC client acknowledges each burst of DATA with a stream-0 WINDOW_UPDATE and a
    bandwidth probe PING: one of each per DATA frame we sent is not counted."""
    client = RawClient()
    front = client.front
    for stream_id in range(1, 2 * 150, 2):
        client.send(client.headers(stream_id, request()))
        front.send_response(stream_id, 200, [])
        front.send_body(stream_id, b"x", end_stream=True)
    answers: list[object] = []
    for _ in range(150):
        answers += [WindowUpdateFrame(0, window_increment=1), PingFrame(0, b"12345678")]
    client.send(*answers)  # type: ignore[arg-type]
    assert not front.closed
    # beyond the DATA it was sent, a client flooding is still caught
    flood(client, [WindowUpdateFrame(0, window_increment=1) for _ in range(101)])
    assert client.counters["h2.flood.violation.window_update_stream0_window"] == 1
