"""sozu's protobuf access logs, read back with a wire reader of the test's own.

The reader below knows nothing of the formatter: it splits the stream into records (varint length,
message, two zero bytes) and a message into {field number: [values]}, checking that fields come in
field-number order, as prost writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataplane.command.log_targets import open_target
from dataplane.command.messages import AccessLogFormat
from dataplane.proxy.observability.access_log import AccessLog
from dataplane.proxy.observability.access_log_format import AccessRecord, formatter_for
from dataplane.proxy.observability.access_log_protobuf import (
    ProtobufFormatter,
    parse_ulid,
    socket_address,
    varint,
)

NOW_NS = 1_764_216_000_123_456_789
ULID = 0x0193_6F2A_1B2C_3D4E_5F60_7182_93A4_B5C6  # any 128-bit value below 2**128
Fields = dict[int, list[Any]]


# -- the test's own wire reader ------------------------------------------------------------


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def fields(data: bytes) -> Fields:
    """Top-level fields of a message: varints as int, fixed32 as int, the rest as bytes."""
    found: Fields = {}
    at = last = 0
    while at < len(data):
        tag, at = read_varint(data, at)
        number, wire_type = tag >> 3, tag & 7
        assert number >= last, f"field {number} after {last}: not prost's order"
        last = number
        value: Any
        if wire_type == 0:
            value, at = read_varint(data, at)
        elif wire_type == 2:
            size, at = read_varint(data, at)
            value, at = data[at : at + size], at + size
            assert len(value) == size
        elif wire_type == 5:
            value, at = int.from_bytes(data[at : at + 4], "little"), at + 4
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
        found.setdefault(number, []).append(value)
    assert at == len(data)
    return found


def records(stream: bytes) -> list[bytes]:
    """The messages of a stream of records: varint length, message, two zero bytes."""
    out, at = [], 0
    while at < len(stream):
        size, at = read_varint(stream, at)
        out.append(stream[at : at + size])
        assert stream[at + size : at + size + 2] == b"\0\0"
        at += size + 2
    return out


def one(found: Fields, number: int) -> object:
    assert len(found[number]) == 1, found[number]
    return found[number][0]


def message(found: Fields, number: int) -> Fields:
    value = one(found, number)
    assert isinstance(value, bytes)
    return fields(value)


def uint128(found: Fields, number: int) -> tuple[object, object]:
    """(low, high) of a Uint128 field: both are required, so both must be there."""
    halves = message(found, number)
    assert set(halves) == {1, 2}
    return one(halves, 1), one(halves, 2)


def crockford(value: int) -> str:
    """The 26-character ULID text of a 128-bit number (written here, not taken from the code)."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * (25 - i))) & 31] for i in range(26))


# -- helpers --------------------------------------------------------------------------------


def formatter() -> ProtobufFormatter:
    made = formatter_for(AccessLogFormat.PROTOBUF, "WRK-00", 4242, clock=lambda: NOW_NS)
    assert isinstance(made, ProtobufFormatter)
    return made


def encode(record: AccessRecord) -> bytes:
    return formatter().format(record)


def full_record(**changes: object) -> AccessRecord:
    values: dict[str, object] = {
        "session_id": "7F3A9C",
        "request_id": crockford(ULID),
        "cluster_id": "api",
        "backend_id": "api-0",
        "client_address": "127.0.0.1:51234",
        "backend_address": "[2001:db8::1]:9000",
        "method": "GET",
        "authority": "example.com",
        "path": "/index.html",
        "status": 200,
        "request_time": 0.00213,
        "response_time": 0.00209,  # so 40 µs in the proxy itself (the service time)
        "bytes_in": 120,
        "bytes_out": 5120,
        "user_agent": "curl/8.5",
        "tags": {"b": "2", "a": "1"},
    }
    values.update(changes)
    return AccessRecord(**values)  # type: ignore[arg-type]


# -- records --------------------------------------------------------------------------------


def test_a_full_record_holds_every_field_sozu_would_write() -> None:
    data = encode(full_record())
    [body] = records(data)
    assert 0x80 <= len(body) < 0x4000  # a two-byte varint length, then the message
    assert data[:2] == bytes([len(body) & 0x7F | 0x80, len(body) >> 7])
    found = fields(body)
    assert sorted(found) == [2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23]
    # a ULID's Uint128, as sozu fills it from its ULID crate: low = top 64 bits, high = bottom
    assert uint128(found, 2) == (ULID >> 64, ULID & (1 << 64) - 1)
    assert (one(found, 3), one(found, 4), one(found, 7)) == (b"api", b"api-0", b"HTTP")

    client = message(found, 5)
    assert one(client, 2) == 51234
    assert message(client, 1) == {1: [0x7F000001]}  # IPv4: fixed32 of the big-endian number
    backend = message(found, 6)
    assert one(backend, 2) == 9000
    v6 = message(message(backend, 1), 2)  # IPv6: a Uint128, low = bottom 64 bits
    assert (one(v6, 1), one(v6, 2)) == (1, 0x2001_0DB8_0000_0000)

    http = message(message(found, 8), 1)
    assert http == {1: [b"GET"], 2: [b"example.com"], 3: [b"/index.html"], 4: [200]}
    assert (one(found, 13), one(found, 14), one(found, 15)) == (40, 120, 5120)  # µs, bytes
    assert one(found, 16) == b"curl/8.5"
    assert [fields(entry) for entry in found[17]] == [  # sorted by key, as a BTreeMap
        {1: [b"a"], 2: [b"1"]},
        {1: [b"b"], 2: [b"2"]},
    ]
    assert one(found, 18) == b"WRK-00"
    assert uint128(found, 19) == (NOW_NS, 0)  # POSIX nanoseconds as a number
    assert (one(found, 20), one(found, 21)) == (2130, 2090)
    assert uint128(found, 23) == (0, 0x7F3A9C)  # the session id as a ULID: (top, bottom)


def test_a_minimal_failed_record_leaves_out_what_is_unknown() -> None:
    record = AccessRecord(session_id="1A2B", message="no backend available")
    data = encode(record)
    [body] = records(data)
    assert data[0] == len(body) < 0x80  # a one-byte varint length
    found = fields(body)
    assert sorted(found) == [1, 2, 7, 8, 13, 14, 15, 18, 19, 20, 23]
    assert one(found, 1) == b"no backend available"
    assert uint128(found, 2) == (0, 0x1A2B)  # no request id: the session's, as sozu
    assert message(found, 8) == {1: [b""]}  # an HTTP endpoint with nothing known, no status
    assert (one(found, 13), one(found, 14), one(found, 15), one(found, 20)) == (0, 0, 0, 0)
    assert uint128(found, 23) == (0, 0x1A2B)


def test_a_long_record_has_a_three_byte_length() -> None:
    data = encode(full_record(path="/" + "p" * 20_000))
    [body] = records(data)
    assert 0x4000 <= len(body) < 0x20_0000
    size = len(body)
    assert data[:3] == bytes([size & 0x7F | 0x80, (size >> 7) & 0x7F | 0x80, size >> 14])
    http = message(message(fields(body), 8), 1)
    assert one(http, 3) == b"/" + b"p" * 20_000


def test_text_is_utf8_and_a_message_is_kept_verbatim() -> None:
    found = fields(records(encode(full_record(path="/café", message="a\nb")))[0])
    assert one(message(message(found, 8), 1), 3) == "/café".encode()
    assert one(found, 1) == b"a\nb"


def test_ids_that_are_not_ulids_or_hex_are_never_misread() -> None:
    found = fields(records(encode(full_record(request_id="R1", session_id="S1")))[0])
    assert uint128(found, 2) == (0, 0)  # no usable id: zeros (the field is required)
    assert 23 not in found
    for bad in ("0" * 25 + "U", "0" * 25 + "_", "8" + "0" * 25, "0" * 27, "\u0660" * 26):
        assert parse_ulid(bad.encode()) is None, bad
    assert parse_ulid(b"7" + b"Z" * 25) == (1 << 128) - 1
    assert parse_ulid(crockford(ULID).lower().encode()) == ULID


def test_addresses_that_cannot_be_parsed_are_left_out() -> None:
    for bad in ("garbage", "1.2.3.4", "1.2.3.4:99999", "[::1]", "::1:80", "host:80", "1.2.3.4:-1"):
        assert socket_address(bad) is None, bad
    found = fields(records(encode(full_record(client_address="x", backend_address="[::1]")))[0])
    assert 5 not in found and 6 not in found


def test_a_missing_status_and_response_time_are_left_out() -> None:
    found = fields(records(encode(full_record(status=None, response_time=None)))[0])
    assert 4 not in message(message(found, 8), 1) and 21 not in found


def test_durations_are_whole_microseconds_never_negative() -> None:
    record = full_record(request_time=2.5, response_time=3.0000019)  # clocks a hair apart
    found = fields(records(encode(record))[0])
    assert (one(found, 20), one(found, 13), one(found, 21)) == (2_500_000, 0, 3_000_001)


def test_tags_with_an_empty_key_or_value_leave_that_part_out_as_prost_does() -> None:
    found = fields(records(encode(full_record(tags={"k": "", "": "v"})))[0])
    assert [fields(entry) for entry in found[17]] == [{2: [b"v"]}, {1: [b"k"]}]


@given(
    st.integers(min_value=0, max_value=(1 << 128) - 1),
    st.lists(st.integers(min_value=0, max_value=(1 << 22) - 1), min_size=1, max_size=8),
)
def test_request_ids_read_back_whatever_they_share(first: int, changes: list[int]) -> None:
    """Ids that share all but their last characters, as a worker's do, and ids that do not."""
    protobuf = formatter()
    fixed = protobuf.fixed(AccessRecord(session_id="1"))
    for change in changes:  # the low 20 bits, and sometimes bits 20-21 too
        ulid = first ^ change
        line = protobuf.line(
            False, fixed, crockford(ulid).encode(), 0.0, 0.0, None, 0, 0, 200, None
        )
        [body] = records(line)
        assert uint128(fields(body), 2) == (ulid >> 64, ulid & (1 << 64) - 1)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_varints_read_back(value: int) -> None:
    data = varint(value)
    assert read_varint(data, 0) == (value, len(data))


def test_records_go_through_the_queue_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(open_target(f"file://{path}"), formatter())
    log.log(full_record(status=200))
    log.log(full_record(status=503, path="/" + "é" * 100, message="backend_timeout"))
    log.close()
    first, second = records(path.read_bytes())
    assert one(message(message(fields(first), 8), 1), 4) == 200
    assert one(fields(second), 1) == b"backend_timeout"
    assert one(message(message(fields(second), 8), 1), 3) == ("/" + "é" * 100).encode()


def test_an_exact_record_byte_for_byte() -> None:
    """One small record, written out by hand from the .proto (prost's field order)."""
    record = AccessRecord(
        session_id="1", request_id=crockford(2), status=200, request_time=0.000001
    )
    tag_time = b"\x92\x01\x06WRK-00" + b"\x9a\x01\x0c\x08" + varint(NOW_NS)
    body = (
        b"\x12\x04\x08\x00\x10\x02"  # request_id: Uint128 {low: 0, high: 2}
        b"\x3a\x04HTTP"  # protocol
        b"\x42\x05\x0a\x03\x20\xc8\x01"  # endpoint { http { status: 200 } }
        b"\x68\x01\x70\x00\x78\x00"  # service_time (all of it: no response), bytes in, out
        + tag_time
        + b"\x10\x00"  # time's high half
        + b"\xa0\x01\x01"  # request_time: 1 µs
        + b"\xba\x01\x04\x08\x00\x10\x01"  # session_id: Uint128 {low: 0, high: 1}
    )
    assert encode(record) == bytes([len(body)]) + body + b"\0\0"
