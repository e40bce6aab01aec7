"""FrontConnection against a real h2 client, in memory: requests, flow control, shutdown."""

from __future__ import annotations

import h2.events as h2e
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import PingFrame
from test_http2_support import Pair, RawClient, request

from dataplane.command.address import SocketAddress
from dataplane.command.messages import HttpListenerConfig
from dataplane.proxy.http2 import (
    Body,
    ConnectionClosed,
    H2Limits,
    RequestHead,
    Sendable,
    StreamReset,
    Trailers,
)


def test_get_round_trip() -> None:
    pair = Pair()
    stream_id = pair.open(request("/a?b=1", accept="text/html"))
    events, _ = pair.exchange()
    assert events == [
        RequestHead(
            stream_id,
            b"GET",
            b"https",
            b"example.com",
            b"/a?b=1",
            [(b"accept", b"text/html")],
            True,
        )
    ]
    assert pair.front.send_response(stream_id, 200, [(b"content-length", b"2")])
    assert pair.front.send_body(stream_id, b"ok", end_stream=True) == 2
    _, client_events = pair.exchange()
    response = client_events[0]
    assert isinstance(response, h2e.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"content-length", b"2")]
    assert [type(event) for event in client_events[1:]] == [h2e.DataReceived, h2e.StreamEnded]
    assert pair.front.active == {}


def test_post_with_body_and_trailers_round_trip() -> None:
    pair = Pair()
    stream_id = pair.open(request("/upload", "POST", te="trailers"), end=False)
    pair.client.send_data(stream_id, b"hello ")
    pair.client.send_data(stream_id, b"world")
    pair.client.send_headers(stream_id, [("x-checksum", "42")], end_stream=True)
    events, _ = pair.exchange()
    head = events[0]
    assert isinstance(head, RequestHead) and not head.end_stream
    assert head.headers == [(b"te", b"trailers")]
    assert events[1:] == [
        Body(stream_id, b"hello ", False),
        Body(stream_id, b"world", False),
        Trailers(stream_id, [(b"x-checksum", b"42")]),
    ]
    pair.front.send_response(stream_id, 200, [(b"content-type", b"application/grpc")])
    pair.front.send_body(stream_id, b"reply")
    assert pair.front.send_trailers(stream_id, [(b"grpc-status", b"0")])
    _, client_events = pair.exchange()
    trailers = [event for event in client_events if isinstance(event, h2e.TrailersReceived)]
    assert trailers[0].headers == [(b"grpc-status", b"0")]
    assert isinstance(client_events[-1], h2e.StreamEnded)


def test_cookie_crumbs_stay_apart_and_host_stands_for_authority() -> None:
    pair = Pair()
    head = [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "a.test")]
    stream_id = pair.open([*head, ("cookie", "a=1"), ("cookie", "b=2")])
    events, _ = pair.exchange()
    assert events == [
        RequestHead(
            stream_id,
            b"GET",
            b"http",
            b"a.test",
            b"/",
            [(b"cookie", b"a=1"), (b"cookie", b"b=2")],
            True,
        )
    ]


def test_body_is_credited_only_when_consumed() -> None:
    """A slow consumer stalls the client: no window comes back until consumed()."""
    limits = H2Limits().with_values(initial_stream_window=65_535)
    pair = Pair(limits)
    stream_id = pair.open(request("/", "POST"), end=False)
    pair.exchange()
    window = pair.client.local_flow_control_window(stream_id)
    assert window == 65_535
    for start in range(0, window, 16_384):
        pair.client.send_data(stream_id, b"x" * min(16_384, window - start))
    events, _ = pair.exchange()
    assert sum(len(event.data) for event in events if isinstance(event, Body)) == window
    assert pair.client.local_flow_control_window(stream_id) == 0  # blocked
    pair.front.consumed(stream_id, 1000)
    pair.exchange()
    assert pair.client.local_flow_control_window(stream_id) == 0  # coalesced, not yet sent
    pair.front.consumed(stream_id, window - 1000)
    pair.exchange()
    assert pair.client.local_flow_control_window(stream_id) == window


def test_connection_window_bounds_unconsumed_bytes() -> None:
    limits = H2Limits().with_values(initial_connection_window=100_000)
    pair = Pair(limits)
    streams = [pair.open(request("/", "POST"), end=False) for _ in range(3)]
    pair.exchange()
    received = 0
    for stream_id in streams:
        allowed = pair.client.local_flow_control_window(stream_id)
        pair.client.send_data(stream_id, b"y" * min(allowed, 16_384), end_stream=False)
        events, _ = pair.exchange()
        received += sum(len(event.data) for event in events if isinstance(event, Body))
    while (allowed := pair.client.local_flow_control_window(streams[0])) > 0:
        pair.client.send_data(streams[0], b"y" * min(allowed, 16_384))
        events, _ = pair.exchange()
        received += sum(len(event.data) for event in events if isinstance(event, Body))
    assert received == 100_000  # nothing consumed: the connection window is the bound


def test_send_body_respects_the_client_window_and_reports_sendable() -> None:
    pair = Pair()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    stream_id = pair.open()
    pair.exchange()
    pair.front.send_response(stream_id, 200, [])
    assert pair.front.sendable(stream_id) == 10
    assert pair.front.send_body(stream_id, b"0123456789abcdef", end_stream=True) == 10
    _, client_events = pair.exchange()
    data = [event for event in client_events if isinstance(event, h2e.DataReceived)]
    assert data[0].data == b"0123456789"
    pair.client.acknowledge_received_data(10, stream_id)
    pair.client.increment_flow_control_window(100, stream_id)
    events, _ = pair.exchange()
    assert Sendable(stream_id) in events
    assert pair.front.send_body(stream_id, b"abcdef", end_stream=True) == 6


def test_large_body_is_cut_into_frames() -> None:
    pair = Pair()
    stream_id = pair.open()
    pair.exchange()
    pair.front.send_response(stream_id, 200, [])
    assert pair.front.send_body(stream_id, b"z" * 60_000, end_stream=True) == 60_000
    _, client_events = pair.exchange()
    sizes = [len(event.data) for event in client_events if isinstance(event, h2e.DataReceived)]
    assert sum(sizes) == 60_000 and max(sizes) <= 16_384


def test_client_reset_is_reported() -> None:
    pair = Pair()
    stream_id = pair.open(end=False)
    pair.exchange()
    pair.client.reset_stream(stream_id, ErrorCodes.CANCEL)
    events, _ = pair.exchange()
    assert events == [StreamReset(stream_id, ErrorCodes.CANCEL, True)]
    assert pair.counters["h2.rst_stream.received.cancel"] == 1
    assert pair.front.send_body(stream_id, b"late") == 0  # gone: nothing sent, no error


def test_reset_by_the_session() -> None:
    pair = Pair()
    stream_id = pair.open()
    pair.exchange()
    pair.front.reset(stream_id, ErrorCodes.INTERNAL_ERROR)
    _, client_events = pair.exchange()
    assert isinstance(client_events[0], h2e.StreamReset)
    assert client_events[0].error_code == ErrorCodes.INTERNAL_ERROR
    assert pair.counters["h2.rst_stream.sent.internal_error"] == 1


def test_streams_beyond_the_limit_are_refused_not_the_connection() -> None:
    limits = H2Limits().with_values(max_concurrent_streams=2)
    client = RawClient(limits)
    events = client.send(*(client.headers(stream_id, request()) for stream_id in (1, 3, 5)))
    assert [event.stream_id for event in events if isinstance(event, RequestHead)] == [1, 3]
    assert client.resets() == {5: ErrorCodes.REFUSED_STREAM}
    assert client.counters["h2.streams.refused"] == 1
    client.front.send_response(1, 204, [], end_stream=True)
    events = client.send(client.headers(7, request("/next")))  # HPACK stayed in step
    assert [event.path for event in events if isinstance(event, RequestHead)] == [b"/next"]


def test_limits_come_from_the_listener() -> None:
    listener = HttpListenerConfig(
        address=SocketAddress.parse("127.0.0.1:8080"),
        back_timeout=45,
        h2_max_concurrent_streams=7,
        h2_max_ping_per_window=3,
        h2_initial_connection_window=2_000_000,
        h2_graceful_shutdown_deadline_seconds=0,
        h2_max_rst_stream_per_window=0,  # clamped to 1, as sozu does
    )
    limits = H2Limits.from_listener(listener)
    assert limits.max_concurrent_streams == 7
    assert limits.max_ping_per_window == 3
    assert limits.initial_connection_window == 2_000_000
    assert limits.graceful_shutdown_deadline == 0
    assert limits.max_rst_stream_per_window == 1
    assert limits.stream_idle_timeout == 45  # max(30, back_timeout)
    assert limits.max_settings_per_window == 50  # sozu's default
    default = H2Limits.from_listener(HttpListenerConfig(address=listener.address))
    assert default == H2Limits()
    pair = Pair(limits)
    assert pair.client.remote_settings.max_concurrent_streams == 7
    assert pair.client.outbound_flow_control_window == 2_000_000


def test_graceful_shutdown_sends_two_goaways_and_drains() -> None:
    client = RawClient()
    client.send(client.headers(1, request(), end=False))
    client.front.shutdown(now=10.0)
    assert client.goaway() == (ErrorCodes.NO_ERROR, 2**31 - 1)
    pings = [frame for frame in client.output() if isinstance(frame, PingFrame)]
    client.send(PingFrame(0, opaque_data=pings[-1].opaque_data, flags=["ACK"]))
    assert client.goaway() == (ErrorCodes.NO_ERROR, 1)  # the final one, after one round trip
    assert client.front.final_goaway_sent and not client.front.done  # stream 1 still open
    client.send(client.data(1, b"", end=True))
    client.front.send_response(1, 200, [], end_stream=True)
    assert client.front.done
    assert client.counters["h2.goaway.sent.no_error"] == 2


def test_final_goaway_refuses_new_streams_and_deadline_closes() -> None:
    client = RawClient()
    client.send(client.headers(1, request(), end=False))
    client.front.shutdown(now=0.0)
    assert client.goaway() == (ErrorCodes.NO_ERROR, 2**31 - 1)
    events = client.send(client.headers(3, request()))  # before the final GOAWAY: taken
    assert [event.stream_id for event in events if isinstance(event, RequestHead)] == [3]
    client.front.expired(1.0)  # no PING answer: the final GOAWAY after a second
    assert client.goaway() == (ErrorCodes.NO_ERROR, 3)
    assert client.send(client.headers(5, request())) == []
    assert client.resets()[5] == ErrorCodes.REFUSED_STREAM
    assert client.front.expired(4.0) == []
    closed = client.front.expired(5.0)  # h2_graceful_shutdown_deadline_seconds (5)
    assert closed == [ConnectionClosed(ErrorCodes.NO_ERROR, "graceful shutdown deadline")]
    assert client.front.done


def test_idle_streams_are_reaped() -> None:
    limits = H2Limits().with_values(stream_idle_timeout=30)
    pair = Pair(limits)
    stalled = pair.open(end=False)
    busy = pair.open(end=False)
    pair.exchange()
    assert pair.front.next_deadline() == 30.0
    pair.now = 20.0
    pair.client.send_data(busy, b"x")
    pair.exchange()
    assert pair.front.expired(29.0) == []
    assert pair.front.expired(30.0) == [StreamReset(stalled, ErrorCodes.CANCEL, False)]
    assert pair.counters["h2.streams.reaped.idle"] == 1
    _, client_events = pair.exchange()
    assert [(event.stream_id, event.error_code) for event in client_events] == [
        (stalled, ErrorCodes.CANCEL)
    ]
    assert list(pair.front.active) == [busy]


@pytest.mark.parametrize("split", [1, 7])
def test_bytes_in_any_split(split: int) -> None:
    client = RawClient()
    head = client.headers(1, request("/split"), end=False)
    data = head.serialize() + client.data(1, b"abc").serialize()
    events = []
    for start in range(0, len(data), split):
        events += client.send(data[start : start + split])
    assert [type(event) for event in events] == [RequestHead, Body]


def test_every_h2_listener_key_reaches_the_limits() -> None:
    """Each `h2_*` listener key (TOML, CLI flag, message field) sets its limit; the
    behaviour each limit bounds is tested in test_http2_security.py."""
    address = SocketAddress.parse("127.0.0.1:8080")
    for name in HttpListenerConfig.__struct_fields__:
        if not name.startswith("h2_") or name == "h2_stream_shrink_ratio":
            continue
        limit = name.removeprefix("h2_")
        limit = {
            "stream_idle_timeout_seconds": "stream_idle_timeout",
            "graceful_shutdown_deadline_seconds": "graceful_shutdown_deadline",
        }.get(limit, limit)
        value = 70_001 if limit == "initial_connection_window" else 77
        limits = H2Limits.from_listener(HttpListenerConfig(address=address, **{name: value}))
        assert getattr(limits, limit) == value, name
        assert getattr(H2Limits(), limit) != value, name  # not the default by chance
