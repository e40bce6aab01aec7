"""BackConnection against a real h2 server (an h2c backend) in memory."""

from __future__ import annotations

import h2.events as h2e
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from test_http2_support import BackPair

from dataplane.proxy.http2 import (
    Body,
    ConnectionClosed,
    GoAwayReceived,
    H2Limits,
    Informational,
    ResponseHead,
    StreamReset,
    Trailers,
)


def open_get(pair: BackPair, path: bytes = b"/", end: bool = True) -> int:
    return pair.back.open_stream(b"GET", b"http", b"backend.test", path, [(b"x-a", b"1")], end)


def test_request_and_response_round_trip() -> None:
    pair = BackPair()
    stream_id = pair.back.open_stream(b"POST", b"http", b"b.test", b"/rpc", [], False)
    assert pair.back.send_body(stream_id, b"payload") == 7
    assert pair.back.send_trailers(stream_id, [(b"x-sum", b"7")])
    _, server_events = pair.exchange()
    request = server_events[0]
    assert isinstance(request, h2e.RequestReceived)
    assert request.headers[:4] == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"b.test"),
        (b":path", b"/rpc"),
    ]
    server = pair.server
    server.send_headers(stream_id, [(":status", "100")])
    server.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
    server.send_data(stream_id, b"answer")
    server.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
    events, _ = pair.exchange()
    assert events == [
        Informational(stream_id, 100, []),
        ResponseHead(stream_id, 200, [(b"content-type", b"application/grpc")], False),
        Body(stream_id, b"answer", False),
        Trailers(stream_id, [(b"grpc-status", b"0")]),
    ]
    assert pair.back.responded(stream_id) is False  # forgotten once the stream is over
    assert pair.back.idle and pair.back.reusable


def test_backend_concurrency_limit_is_respected() -> None:
    pair = BackPair(max_streams=2)
    assert pair.back.remote_settings_seen
    first, second = open_get(pair, end=False), open_get(pair, end=False)
    assert not pair.back.can_open()
    pair.exchange()
    pair.server.send_headers(first, [(":status", "204")], end_stream=True)
    pair.back.end_stream(first)
    pair.exchange()
    assert pair.back.can_open()
    assert open_get(pair) == second + 2


def test_at_most_100_streams_before_the_backend_settings() -> None:
    pair = BackPair()
    pair.back.remote_settings_seen = False  # as if its SETTINGS had not arrived yet
    pair.back.conn.remote_settings.max_concurrent_streams = 2**31
    for _ in range(100):
        open_get(pair, end=False)
    assert not pair.back.can_open()


def test_backend_goaway_drains_and_refuses_streams_above_its_last_id() -> None:
    pair = BackPair()
    kept, dropped = open_get(pair, end=False), open_get(pair, end=False)
    pair.exchange()
    pair.server.close_connection(ErrorCodes.NO_ERROR, last_stream_id=kept)
    pair.server.state_machine.state = ConnectionState.SERVER_OPEN  # as real servers drain
    events, _ = pair.exchange()
    assert events == [
        GoAwayReceived(ErrorCodes.NO_ERROR, kept, b""),
        StreamReset(dropped, ErrorCodes.REFUSED_STREAM, True),
    ]
    assert not pair.back.reusable and not pair.back.can_open()
    assert pair.back.send_body(kept, b"still", end_stream=True) == 5  # in flight: finishes
    pair.server.send_headers(kept, [(":status", "200")], end_stream=True)
    events, server_events = pair.exchange()
    assert [type(event) for event in server_events] == [h2e.DataReceived, h2e.StreamEnded]
    assert events == [ResponseHead(kept, 200, [], True)] and pair.back.idle
    assert pair.counters["h2.goaway.received.no_error"] == 1


def test_backend_goaway_with_an_error_closes() -> None:
    pair = BackPair()
    open_get(pair)
    pair.exchange()
    pair.server.close_connection(ErrorCodes.INTERNAL_ERROR)
    events, _ = pair.exchange()
    assert events[-1] == ConnectionClosed(ErrorCodes.INTERNAL_ERROR, "the peer sent GOAWAY")
    assert pair.back.closed


def test_resets_propagate_both_ways() -> None:
    pair = BackPair()
    cancelled, refused = open_get(pair, end=False), open_get(pair, end=False)
    pair.exchange()
    pair.back.reset(cancelled, ErrorCodes.CANCEL)  # the client went away
    _, server_events = pair.exchange()
    assert [(e.stream_id, e.error_code) for e in server_events] == [(cancelled, ErrorCodes.CANCEL)]
    pair.server.reset_stream(refused, ErrorCodes.REFUSED_STREAM)
    events, _ = pair.exchange()
    assert events == [StreamReset(refused, ErrorCodes.REFUSED_STREAM, True)]
    assert pair.back.responded(refused) is False  # nothing answered: safe to retry


def test_malformed_response_resets_the_stream() -> None:
    pair = BackPair()
    stream_id = open_get(pair)
    pair.exchange()
    pair.server.send_headers(stream_id, [(":status", "200"), ("connection", "close")])
    events, _ = pair.exchange()
    assert events == [StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, False)]
    assert pair.counters["h2.headers.rejected.connection_specific"] == 1


def test_response_body_back_pressure() -> None:
    pair = BackPair(limits=H2Limits().with_values(initial_stream_window=65_535))
    stream_id = open_get(pair)
    pair.exchange()
    pair.server.send_headers(stream_id, [(":status", "200")])
    for _ in range(4):
        pair.server.send_data(stream_id, b"b" * 16_383)
    pair.exchange()
    assert pair.server.local_flow_control_window(stream_id) == 3
    pair.back.consumed(stream_id, 65_532)
    pair.exchange()
    assert pair.server.local_flow_control_window(stream_id) == 65_535


def test_settings_never_acknowledged_times_out() -> None:
    back = BackPair().back
    back.settings_acked = False
    assert back.next_deadline() == back.opened_at + 5.0  # a timer is armed for it
    assert back.expired(4.0) == []
    assert back.expired(5.0) == [
        ConnectionClosed(ErrorCodes.SETTINGS_TIMEOUT, "SETTINGS not acknowledged")
    ]


def test_close_says_goodbye() -> None:
    pair = BackPair()
    pair.back.close()
    _, server_events = pair.exchange()
    assert isinstance(server_events[0], h2e.ConnectionTerminated)
    assert not pair.back.can_open()
