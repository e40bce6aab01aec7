"""fast_receive.receive_request: a client's request opens its stream exactly as h2 opens it (the
stream's every attribute, the connection's bookkeeping, the events, the bytes answered), and
whatever it does not take (PRIORITY, a 1xx claim, bad stream ids, inbound validation, too many
streams) is h2's, with h2's errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from h2.stream import H2Stream
from hyperframe.frame import HeadersFrame

from dataplane.proxy.http2 import fast_path, fast_receive
from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.flood import FloodMonitor, GuardedConnection
from dataplane.proxy.http2.limits import H2Limits

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
POST = [(b":method", b"POST"), *GET[1:], (b"content-length", b"4"), (b"x-a", b"1")]
HEAD = [(b":method", b"HEAD"), *GET[1:]]
RESPONSE = [(b":status", b"200"), (b"server", b"pysozu")]


def config(**options: object) -> H2Configuration:
    """As the endpoints configure h2 (endpoint.py): inbound fields neither checked nor
    normalized, bytes throughout."""
    settings: dict[str, object] = {
        "client_side": False,
        "header_encoding": None,
        "validate_inbound_headers": False,
        "normalize_inbound_headers": False,
        "validate_outbound_headers": False,
        "normalize_outbound_headers": False,
        **options,
    }
    return H2Configuration(**settings)  # type: ignore[arg-type]


def pair(**options: object) -> tuple[H2Connection, GuardedConnection]:
    """h2's server and ours, both past the preface."""
    plain = H2Connection(config(**options))
    guarded = GuardedConnection(config(**options), FloodMonitor(H2Limits(), H2Counters(), 0.0), 100)
    for server in (plain, guarded):
        server.initiate_connection()
        server.data_to_send()
    return plain, guarded


@pytest.fixture
def h2_opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, bool]]]:
    """(stream id, by a GuardedConnection) of each head given to h2's own `receive_headers`."""
    calls: list[tuple[int, bool]] = []
    original = H2Stream.receive_headers
    guarded = set()
    connection_init = GuardedConnection.__init__

    def remember(self: GuardedConnection, *args: object) -> None:
        connection_init(self, *args)  # type: ignore[arg-type]
        guarded.add(id(self.config))

    def counted(self: H2Stream, *args: object) -> object:
        calls.append((self.stream_id, id(self.config) in guarded))
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(GuardedConnection, "__init__", remember)
    monkeypatch.setattr(H2Stream, "receive_headers", counted)
    yield calls


def described(events: list[Event]) -> list[tuple[str, dict[str, str]]]:
    """Each event's kind and every field (nested events by their repr)."""
    return [
        (type(event).__name__, {name: repr(value) for name, value in vars(event).items()})
        for event in events
    ]


def stream_state(conn: H2Connection) -> dict[int, dict[str, object]]:
    """Every attribute of every stream, its state machine's and window manager's included."""
    states = {}
    for stream_id, stream in conn.streams.items():
        fields = dict(vars(stream))
        fields["state_machine"] = dict(vars(stream.state_machine))
        fields["_inbound_window_manager"] = dict(vars(stream._inbound_window_manager))
        assert fields.pop("config") is conn.config
        states[stream_id] = fields
    return states


def connection_state(conn: H2Connection) -> tuple[object, ...]:
    return (
        stream_state(conn),
        list(conn._closed_streams.items()),  # in order: the oldest are dropped first
        conn.highest_inbound_stream_id,
        conn.state_machine.state,
        conn.decoder.header_table.dynamic_entries,
    )


def feed_both(plain: H2Connection, guarded: GuardedConnection, data: bytes) -> list[Event]:
    """Both receive `data`: the same events, state and answer; the events returned."""
    events = plain.receive_data(data)
    ours = guarded.receive_data(data)
    assert described(ours) == described(events)
    assert connection_state(guarded) == connection_state(plain)
    assert guarded.data_to_send() == plain.data_to_send()
    return ours


def client() -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    return conn


def test_requests_open_their_streams_as_h2_opens_them(h2_opened: list[tuple[int, bool]]) -> None:
    plain, guarded = pair()
    peer = client()
    peer.send_headers(1, GET, end_stream=True)
    peer.send_headers(3, POST)
    peer.send_headers(5, HEAD, end_stream=True)
    events = feed_both(plain, guarded, peer.data_to_send())
    names = [type(event).__name__ for event in events]
    assert names[-5:] == [
        "RequestReceived", "StreamEnded", "RequestReceived", "RequestReceived", "StreamEnded",
    ]  # fmt: skip
    assert guarded.streams[3]._expected_content_length == 4
    # the streams go on as h2's: a body, responses, closed streams forgotten on the next one
    peer.send_data(3, b"body", end_stream=True)
    feed_both(plain, guarded, peer.data_to_send())
    for server in (plain, guarded):
        for stream_id in (1, 3, 5):
            server.send_headers(stream_id, RESPONSE, end_stream=True)
    assert guarded.data_to_send() == plain.data_to_send()
    peer.send_headers(7, GET)
    feed_both(plain, guarded, peer.data_to_send())
    assert list(guarded.streams) == [7]
    # h2's own opened all of plain's and our first (which opens h2's connection state)
    assert h2_opened == [(1, False), (3, False), (5, False), (1, True), (7, False)]


def opened(peer: H2Connection) -> tuple[H2Connection, GuardedConnection]:
    """Both servers past the client's first request (stream 1), which opens h2's
    connection state."""
    plain, guarded = pair()
    peer.send_headers(1, GET, end_stream=True)
    feed_both(plain, guarded, peer.data_to_send())
    return plain, guarded


def headers(peer: H2Connection, stream_id: int, head: list[tuple[bytes, bytes]]) -> bytes:
    """A HEADERS frame (END_STREAM) encoded by `peer`'s HPACK encoder, unchecked."""
    block = peer.encoder.encode(head)
    return HeadersFrame(stream_id, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()


def test_the_fast_path_takes_a_plain_request_frame() -> None:
    peer = client()
    _plain, guarded = opened(peer)
    raw = headers(peer, 3, GET)
    frame = fast_receive.headers_frame(raw[4], 3, raw[9:])
    assert frame is not None
    events = fast_receive.receive_request(guarded, frame)
    assert events is not None
    assert [type(event).__name__ for event in events] == ["RequestReceived", "StreamEnded"]
    assert events[0].headers == GET  # type: ignore[attr-defined]


def test_priority_and_validation_are_left_to_h2() -> None:
    plain, guarded = pair()
    peer = client()
    peer.send_headers(1, GET, end_stream=True, priority_weight=200)
    events = feed_both(plain, guarded, peer.data_to_send())
    assert "PriorityUpdated" in [type(event).__name__ for event in events]
    frame = HeadersFrame(3, data=b"\x82\x86\x84\x41\x01a", flags=["END_HEADERS"])
    _plain, checking = pair(validate_inbound_headers=True)
    assert fast_receive.receive_request(checking, frame) is None
    assert fast_receive.receive_request(guarded, frame) is not None
    assert fast_receive.receive_request(guarded, frame) is None  # it exists now
    _plain, encoding = pair(header_encoding="utf-8")
    assert fast_receive.receive_request(encoding, frame) is None
    _plain, normalizing = pair(normalize_inbound_headers=True)
    assert fast_receive.receive_request(normalizing, frame) is None


@pytest.mark.parametrize(
    "name", ["client_side", "validate_inbound_headers", "normalize_inbound_headers"]
)
@pytest.mark.parametrize("value", [False, True])
def test_the_options_read_from_the_configurations_dict_are_its_properties(
    name: str, value: bool
) -> None:
    """fast_path reads h2's options from where its descriptors keep them (no call each)."""
    configuration = config(**{name: value})
    assert configuration.__dict__["_" + name] is getattr(configuration, name) is value
    for encoding in (None, "utf-8", False):
        configuration.header_encoding = encoding
        assert configuration.__dict__["_header_encoding"] is configuration.header_encoding


@pytest.mark.parametrize(
    "head, message",
    [
        ([(b":status", b"103"), *GET], "END_STREAM on informational"),  # claiming a 1xx
        ([*GET, (b"content-length", b"x")], "Invalid content-length"),
        ([*GET, (b"content-length", b"1"), (b"content-length", b"2")], "Conflicting"),
    ],
)
def test_bad_requests_fail_as_in_h2(head: list[tuple[bytes, bytes]], message: str) -> None:
    peer = client()
    plain, guarded = opened(peer)
    data = headers(peer, 3, head)
    errors = []
    for server in (plain, guarded):
        with pytest.raises(ProtocolError, match=message) as caught:
            server.receive_data(data)
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]
    assert connection_state(guarded) == connection_state(plain)
    assert guarded.data_to_send() == plain.data_to_send()  # the same GOAWAY


@pytest.mark.parametrize("stream_id", [6, 3])  # even; not above the highest
def test_bad_stream_ids_fail_as_in_h2(stream_id: int) -> None:
    peer = client()
    plain, guarded = opened(peer)
    peer.send_headers(5, GET, end_stream=True)
    feed_both(plain, guarded, peer.data_to_send())
    frame = HeadersFrame(stream_id, data=b"\x82\x86\x84\x41\x01a", flags=["END_HEADERS"])
    assert fast_receive.receive_request(guarded, frame) is None
    errors = []
    for server in (plain, guarded):
        with pytest.raises(ProtocolError) as caught:
            server.receive_data(frame.serialize())
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]
    assert guarded.data_to_send() == plain.data_to_send()


def test_the_concurrency_limit_is_h2s() -> None:
    plain, guarded = pair()
    peer = client()
    for server in (plain, guarded):  # our SETTINGS (2 streams), acknowledged
        server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 2})
        peer.receive_data(server.data_to_send())
    peer.send_headers(1, GET)
    peer.send_headers(3, GET)
    data = peer.data_to_send()
    feed_both(plain, guarded, data)
    assert guarded.local_settings.max_concurrent_streams == 2
    frame = HeadersFrame(5, data=b"\x82\x86\x84\x41\x01a", flags=["END_HEADERS"])
    assert fast_receive.receive_request(guarded, frame) is None  # h2 raises TooManyStreamsError
    for server in (plain, guarded):
        server.reset_stream(1, ErrorCodes.CANCEL)
    assert guarded.data_to_send() == plain.data_to_send()
    feed_both(plain, guarded, frame.serialize())  # one closed: the new one fits
    assert list(guarded.streams) == [3, 5]


def test_a_response_then_trailers_move_the_stream_as_in_h2() -> None:
    """The sending side's state changes (fast_path's `_sent_headers`/`_sent_end_stream`),
    down to h2's refusal of a second set of trailers, which closes the stream."""
    peer = client()
    plain, guarded = opened(peer)
    peer.send_headers(3, POST)
    feed_both(plain, guarded, peer.data_to_send())
    trailers = [(b"grpc-status", b"0")]
    assert fast_path.send_headers(guarded, 3, RESPONSE, False)
    plain.send_headers(3, RESPONSE)
    assert fast_path.send_data(guarded, 3, b"data", False)
    plain.send_data(3, b"data")
    assert stream_state(guarded) == stream_state(plain)
    errors = []
    for send in (
        lambda: plain.send_headers(3, trailers),
        lambda: fast_path.send_headers(guarded, 3, trailers, False),
        lambda: plain.send_headers(3, trailers, end_stream=True),
        lambda: fast_path.send_headers(guarded, 3, trailers, True),
    ):
        with pytest.raises(ProtocolError) as caught:
            send()
        errors.append(type(caught.value))
    assert errors[0] is errors[1] and errors[2] is errors[3]
    assert stream_state(guarded) == stream_state(plain)
    assert guarded.streams[3].closed
    assert guarded.data_to_send() == plain.data_to_send()


@pytest.mark.parametrize("end_stream", [False, True])
def test_end_stream_on_an_open_stream_half_closes_it_as_in_h2(end_stream: bool) -> None:
    peer = client()
    plain, guarded = opened(peer)
    peer.send_headers(3, POST)
    feed_both(plain, guarded, peer.data_to_send())
    assert fast_path.send_headers(guarded, 3, RESPONSE, end_stream)
    plain.send_headers(3, RESPONSE, end_stream=end_stream)
    if not end_stream:
        assert fast_path.send_data(guarded, 3, b"", True)
        plain.end_stream(3)
    assert stream_state(guarded) == stream_state(plain)
    assert guarded.data_to_send() == plain.data_to_send()
    peer.send_data(3, b"body", end_stream=True)
    feed_both(plain, guarded, peer.data_to_send())  # HALF_CLOSED_LOCAL -> CLOSED, h2's


def test_forgotten_streams_are_kept_within_h2s_size_limit() -> None:
    peer = client()
    plain, guarded = opened(peer)
    for server in (plain, guarded):
        server._closed_streams._size_limit = 3  # type: ignore[attr-defined]
    for stream_id in (3, 5, 7, 9):
        peer.send_headers(stream_id, GET, end_stream=True)
    feed_both(plain, guarded, peer.data_to_send())
    for server in (plain, guarded):
        for stream_id in (1, 3, 5, 7, 9):
            server.send_headers(stream_id, RESPONSE, end_stream=True)
    assert guarded.data_to_send() == plain.data_to_send()
    peer.send_headers(11, GET)
    feed_both(plain, guarded, peer.data_to_send())
    assert list(guarded._closed_streams) == [5, 7, 9]


def test_a_remembered_block_is_decoded_as_the_cached_decoder_decodes_it() -> None:
    """fast_receive.decoded reads CachedDecoder's remembered blocks as its decode() does."""
    from h2.connection import _decode_headers
    from hpack import Decoder, Encoder

    from dataplane.proxy.http2.hpack_cache import CachedDecoder

    encoder = Encoder()
    indexed = encoder.encode(GET)  # adds :authority to the encoder's table
    again = encoder.encode(GET)  # every field indexed: a block the decoder remembers
    for decoder, twin in ((CachedDecoder(65_536), CachedDecoder(65_536)), (Decoder(), Decoder())):
        for block in (indexed, again, again, again):
            ours = fast_receive.decoded(decoder, block)
            assert list(ours) == list(_decode_headers(twin, block)) == GET
        assert decoder.header_table.dynamic_entries == twin.header_table.dynamic_entries
    decoder = CachedDecoder(65_536)
    fast_receive.decoded(decoder, indexed)
    first = fast_receive.decoded(decoder, again)
    assert isinstance(first, list) and again in decoder._blocks  # read from the cache next
    first.append((b"x", b"y"))  # the caller's own list
    assert list(fast_receive.decoded(decoder, again)) == GET
    decoder.max_header_list_size = 10  # remembered blocks no longer hold: decode() refuses
    with pytest.raises(ProtocolError, match="Oversized"):
        fast_receive.decoded(decoder, again)
