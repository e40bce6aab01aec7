"""Load generators: wrk, h2load, udpload and grpcload command lines, and reading their reports.

wrk 4.1 silently ignores a header written without a space after the colon
(`-H 'Connection:close'`), so headers are only ever built here, as `Name: value`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import grpcload, udpload
from harness.errors import ParseError

_DURATION_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured: throughput, latency quantiles (None when unknown), failures."""

    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int  # socket errors plus non-2xx/3xx answers


def header(name: str, value: str) -> str:
    """A header argument in the only form wrk honours: `Name: value`."""
    if not name or ":" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid header name {name!r}")
    return f"{name}: {value.strip()}"


def wrk_command(
    wrk: str,
    url: str,
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    threads: int = 1,
    timeout_s: int = 5,
    script: Path | None = None,
) -> list[str]:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s}s",
        "--latency",
    ]
    for name, value in headers.items():
        argv += ["-H", header(name, value)]
    if script is not None:
        argv += ["-s", str(script)]
    return [*argv, url]


def h2load_command(
    h2load: str,
    url: str,
    *,
    connections: int,
    duration_s: float,
    connect_to: str,
    streams: int = 10,
) -> list[str]:
    """h2load against url's authority, connecting to connect_to (so `localhost` never means ::1)."""
    return [
        h2load,
        f"--connect-to={connect_to}",
        f"--clients={connections}",
        f"--max-concurrent-streams={streams}",
        f"--duration={max(1, round(duration_s))}",
        "--warm-up-time=0",
        url,
    ]


def udpload_command(
    port: int, *, flows: int, duration_s: float, window: int = 4, size: int = 64
) -> list[str]:
    """harness/udpload.py, run by this Python, against 127.0.0.1:port."""
    return [
        sys.executable,
        udpload.__file__,
        "127.0.0.1",
        str(port),
        f"--duration={duration_s:g}",
        f"--flows={flows}",
        f"--window={window}",
        f"--size={size}",
    ]


def parse_udpload(text: str) -> LoadResult:
    """Read udpload's summary: a reply is a request; datagrams lost are errors."""
    load = udpload.parse(text)
    if load is None:
        raise ParseError(f"no udpload summary in output:\n{text.strip()[-500:]}")
    return LoadResult(
        requests=load.received,
        duration_s=load.seconds,
        requests_per_s=load.received / load.seconds if load.seconds > 0 else 0.0,
        p50_ms=None,
        p99_ms=None,
        errors=load.lost,
    )


def parse_grpcload(text: str) -> LoadResult:
    """Read grpcload's summary: a call is a request; failed or wrong answers are errors."""
    load = grpcload.parse(text)
    if load is None:
        raise ParseError(f"no grpcload summary in output:\n{text.strip()[-500:]}")
    return LoadResult(
        requests=load.calls,
        duration_s=load.seconds,
        requests_per_s=load.calls / load.seconds if load.seconds > 0 else 0.0,
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        errors=load.errors,
    )


def duration_ms(text: str) -> float:
    """'431.12us' / '1.20ms' / '2.00s' / '1.00m' in milliseconds."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ParseError(f"not a duration: {text!r}")
    return float(match[1]) * _DURATION_UNITS_MS[match[2]]


def parse_wrk(text: str) -> LoadResult:
    """Read `wrk --latency` output."""
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)", text, re.M)
    if rate is None or total is None:
        raise ParseError(f"no wrk summary in output:\n{text.strip()[-500:]}")
    quantiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([0-9.]+(?:us|ms|s|m))\s*$", text, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors += int(non_2xx[1])
    return LoadResult(
        requests=int(total[1]),
        duration_s=duration_ms(total[2] + total[3]) / 1000,
        requests_per_s=float(rate[1]),
        p50_ms=duration_ms(quantiles["50"]) if "50" in quantiles else None,
        p99_ms=duration_ms(quantiles["99"]) if "99" in quantiles else None,
        errors=errors,
    )


def parse_h2load(text: str) -> LoadResult:
    """Read h2load's report; it gives no latency quantiles, only min/max/mean."""
    finished = re.search(r"finished in ([0-9.]+(?:us|ms|s|m)), ([0-9.]+) req/s", text)
    requests = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed", text
    )
    statuses = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if finished is None or requests is None or statuses is None:
        raise ParseError(f"no h2load summary in output:\n{text.strip()[-500:]}")
    return LoadResult(
        requests=int(requests[1]),
        duration_s=duration_ms(finished[1]) / 1000,
        requests_per_s=float(finished[2]),
        p50_ms=None,
        p99_ms=None,
        errors=int(requests[2]) + int(statuses[1]) + int(statuses[2]),
    )
