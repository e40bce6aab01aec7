"""`access_logs_format = "protobuf"` in a real `pysozu start`: sozu's binary records in the file,
one per request, decoded here with a wire reader of the test's own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_observability_access_logs import get, start

pytestmark = pytest.mark.timeout(60)

Fields = dict[int, list[Any]]


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value, shift, at = value | (byte & 0x7F) << shift, shift + 7, at + 1
        if byte < 0x80:
            return value, at


def fields(data: bytes) -> Fields:
    """{field number: [values]}: varints and fixed32 as int, length-delimited as bytes."""
    found: Fields = {}
    at = 0
    while at < len(data):
        tag, at = read_varint(data, at)
        value: Any
        if tag & 7 == 0:
            value, at = read_varint(data, at)
        elif tag & 7 == 2:
            size, at = read_varint(data, at)
            value, at = data[at : at + size], at + size
        else:
            assert tag & 7 == 5, tag
            value, at = int.from_bytes(data[at : at + 4], "little"), at + 4
        found.setdefault(tag >> 3, []).append(value)
    return found


def records_of(path: Path, count: int, timeout: float = 5.0) -> list[Fields]:
    """The file's records (varint length, message, two zero bytes) once it has `count`."""
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes() if path.exists() else b""
        found, at = [], 0
        while at < len(data):
            size, at = read_varint(data, at)
            assert data[at + size : at + size + 2] == b"\0\0"
            found.append(fields(data[at : at + size]))
            at += size + 2
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_one_record_per_request(pysozu: Any, backends: Any, tmp_path: Path) -> None:
    _proxy, listen, log_path = start(pysozu, backends, tmp_path, "protobuf")
    assert get(listen, "app.com", "/hello?x=1", agent="obs test [1.0]") == 200
    assert get(listen, "empty.com", "/nothing") == 503
    assert get(listen, "nowhere.com", "/lost") == 404
    found = records_of(log_path, 3)
    assert len(found) == 3, found
    by_status = {}
    for record in found:
        [endpoint] = record[8]
        [http] = fields(endpoint)[1]
        by_status[fields(http)[4][0]] = (record, fields(http))

    ok, http = by_status[200]
    assert (http[1], http[2], http[3]) == ([b"GET"], [b"app.com"], [b"/hello?x=1"])
    assert (ok[3], ok[4], ok[7], ok[16]) == ([b"app"], [b"app-1"], [b"http"], [b"obs test [1.0]"])
    client = fields(ok[5][0])
    assert fields(client[1][0]) == {1: [0x7F000001]}  # 127.0.0.1 as sozu's fixed32
    backend = fields(ok[6][0])
    assert fields(backend[1][0]) == {1: [0x7F000001]} and backend[2][0] > 0
    assert ok[18][0].startswith(b"WRK-0") and 1 not in ok
    assert ok[14][0] > 0 and ok[15][0] > 0
    assert 0 <= ok[21][0] <= ok[20][0] < 5_000_000  # microseconds
    now_ns = time.time_ns()
    stamp = fields(ok[19][0])
    assert stamp[2] == [0] and now_ns - 60_000_000_000 < stamp[1][0] <= now_ns
    request_id = fields(ok[2][0])  # a ULID: its top half in `low`, starting with the time in ms
    assert abs((request_id[1][0] >> 16) - now_ns // 1_000_000) < 60_000

    failed, http = by_status[503]
    assert failed[1] == [b"no backend available"] and failed[3] == [b"empty"]
    assert 4 not in failed and 6 not in failed and 21 not in failed
    assert http[3] == [b"/nothing"]

    lost, http = by_status[404]
    assert 3 not in lost and http[3] == [b"/lost"] and http[2] == [b"nowhere.com"]
