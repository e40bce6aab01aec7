from pathlib import Path

import pytest
from harness import loadgen
from harness.errors import ParseError

FIXTURES = Path(__file__).with_name("fixtures")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_wrk_report_is_read():
    result = loadgen.parse_wrk(fixture("wrk-ok.txt"))
    assert result.requests == 31468
    assert result.duration_s == pytest.approx(1.01)
    assert result.requests_per_s == pytest.approx(31199.56)
    assert result.p50_ms == pytest.approx(0.195)
    assert result.p99_ms == pytest.approx(6.11)
    assert result.errors == 0


def test_wrk_errors_count_socket_errors_and_error_answers():
    result = loadgen.parse_wrk(fixture("wrk-errors.txt"))
    assert result.errors == 12 + 3 + 7 + 24859
    assert result.p99_ms == pytest.approx(1070.0)


def test_wrk_failure_output_is_an_error_not_zero():
    with pytest.raises(ParseError):
        loadgen.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_h2load_report_is_read():
    result = loadgen.parse_h2load(fixture("h2load-ok.txt"))
    assert result.requests == 4010
    assert result.requests_per_s == pytest.approx(4000.0)
    assert result.errors == 10 + 4 + 6
    assert result.p50_ms is None and result.p99_ms is None


@pytest.mark.parametrize(
    ("text", "ms"), [("431.12us", 0.43112), ("1.20ms", 1.2), ("2.00s", 2000.0), ("1.00m", 60000.0)]
)
def test_durations_are_converted_to_milliseconds(text, ms):
    assert loadgen.duration_ms(text) == pytest.approx(ms)


def test_headers_always_have_the_space_wrk_needs():
    # wrk 4.1 silently ignores "Connection:close".
    assert loadgen.header("Connection", "close") == "Connection: close"
    argv = loadgen.wrk_command(
        "wrk", "http://127.0.0.1:1/", connections=50, duration_s=10, headers={"Connection": "close"}
    )
    assert argv[argv.index("-H") + 1] == "Connection: close"
    assert argv[-1] == "http://127.0.0.1:1/"
    assert "-c50" in argv and "-d10s" in argv and "--latency" in argv


@pytest.mark.parametrize("name", ["", "Connection:", "Bad Name"])
def test_malformed_header_names_are_refused(name):
    with pytest.raises(ValueError):
        loadgen.header(name, "x")


def test_an_idle_connection_waits_for_the_whole_answer():
    from harness.idle import answered

    assert not answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")
    assert not answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    assert answered(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
    assert answered(b"HTTP/1.1 204 No Content\r\n\r\n")
