"""A line made outside a batch (`Formatter.line`, what a TCP connection writes), in every
format: its level follows `error`, not a status (a TCP connection has none)."""

from __future__ import annotations

import pytest

from dataplane.command.messages import AccessLogFormat
from dataplane.proxy.observability.access_log_format import AccessRecord, formatter_for

RECORD = AccessRecord(
    session_id="S1",
    cluster_id="db",
    backend_id="b",
    client_address="10.0.0.9:4000",
    backend_address="10.0.0.2:5432",
    protocol="TCP",
    request_time=1.5,
    bytes_in=5,
    bytes_out=3,
    tags={"team": "db"},
)


def line(log_format: AccessLogFormat, error: bool, message: str | None) -> bytes:
    formatter = formatter_for(log_format, "WRK-00", 7, clock=lambda: 1_700_000_000_000_000_000)
    formatter.restamp()
    fixed = formatter.fixed(RECORD)
    return formatter.line(error, fixed, None, 1.5, 1.5, None, 5, 3, None, message)


def test_ascii_tcp_lines_at_both_levels() -> None:
    ok = line(AccessLogFormat.ASCII, False, None)
    assert ok == (
        b"2023-11-14T22:13:20.000000Z 1700000000000000000 7 INFO-ACCESS  WRK-00\t[S1 - db b] "
        b"10.0.0.9:4000 10.0.0.2:5432 1500ms/1500ms/-/-/- 5 3 [team=db] None TCP - - - -\n"
    )
    failed = line(AccessLogFormat.ASCII, True, "backend_timeout")
    assert b" ERROR-ACCESS WRK-00\t" in failed
    assert failed.endswith(b"TCP - - - - | backend_timeout\n")


@pytest.mark.parametrize("log_format", [AccessLogFormat.JSON, AccessLogFormat.PROTOBUF])
def test_other_formats_take_the_level_and_the_protocol(log_format: AccessLogFormat) -> None:
    ok, failed = line(log_format, False, None), line(log_format, True, "client_timeout")
    assert b"TCP" in ok and b"client_timeout" in failed and ok != failed
