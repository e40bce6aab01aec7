"""Health checks without I/O: what a probe sends, how its answer is judged, and the verdict.

- `http_request(uri, host)`: `GET <uri> HTTP/1.1` with `Connection: close`, as sozu sends.
- `HttpAnswer`: fed the bytes a backend sends back, it finds the status line (at most
  `MAX_STATUS_LINE` bytes are looked at: a backend cannot make a probe hold more) and says
  whether the status passes: the configured `expected_status`, or any 2xx when it is 0.
- `Verdict`: one backend's health with its thresholds. Every backend starts healthy; it turns
  unhealthy after `unhealthy_threshold` consecutive failed probes and healthy again after
  `healthy_threshold` consecutive successes. `record` answers the new state when it changed;
  `take` adopts a verdict relayed from the prober worker.
- `Plan`: one cluster's check, whichever table it came from: `http_plan` for the cluster's
  `health_check` (an HTTP probe, or a TCP connect for clusters served by a TCP listener),
  `udp_plan` for `[clusters.<id>.udp.health]` (sozu 2.1's UDP backend probes: TCP_PROBE a
  connect to `tcp_port`, default the backend's own port; UDP_PROBE the `udp_probe_payload`
  datagram, passed by any reply within the timeout; `rise`/`fall` are the thresholds).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from dataplane.command.messages import HealthCheckConfig, UdpHealthConfig, UdpHealthMode

MAX_STATUS_LINE = 4096
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?\r?\n")


def http_request(uri: str, host: str) -> bytes:
    return (
        f"GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pysozu-health-check\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def status_passes(status: int, expected: int) -> bool:
    return status == expected if expected else 200 <= status < 300


class HttpAnswer:
    """The start of a backend's answer to a probe, until its status is known."""

    __slots__ = ("data", "expected", "status")

    def __init__(self, expected: int = 0) -> None:
        self.expected = expected
        self.data = b""
        self.status: int | None = None

    def feed(self, chunk: bytes) -> bool | None:
        """True/False once the status line is read (passes or not), None: more bytes needed.
        Something that is not an HTTP/1.x status line, or none within `MAX_STATUS_LINE`
        bytes, fails."""
        self.data = (self.data + chunk)[:MAX_STATUS_LINE]
        match = _STATUS.match(self.data)
        if match is not None:
            self.status = int(match.group(1))
            return status_passes(self.status, self.expected)
        if b"\n" in self.data or len(self.data) >= MAX_STATUS_LINE:
            return False
        if not b"HTTP/1.".startswith(self.data[:7]):
            return False  # not an HTTP/1.x answer
        return None

    def ended(self) -> bool:
        """The backend closed: passes only when the status was read and passed."""
        return self.status is not None and status_passes(self.status, self.expected)


class Verdict:
    """One backend's health-check state: consecutive results against the thresholds."""

    __slots__ = ("failures", "healthy", "successes")

    def __init__(self) -> None:
        self.healthy = True
        self.successes = 0
        self.failures = 0

    def record(self, passed: bool, healthy_threshold: int, unhealthy_threshold: int) -> bool | None:
        """Count one probe; the new health when this probe changed it, else None."""
        if passed:
            self.failures = 0
            self.successes += 1
            if not self.healthy and self.successes >= healthy_threshold:
                self.healthy = True
                return True
        else:
            self.successes = 0
            self.failures += 1
            if self.healthy and self.failures >= unhealthy_threshold:
                self.healthy = False
                return False
        return None

    def take(self, healthy: bool) -> None:
        """Adopt a verdict reached elsewhere (the prober's, relayed by main): the counting
        starts afresh from it, so a backend out stays out until `healthy_threshold` passes."""
        self.healthy = healthy
        self.successes = self.failures = 0


class Plan(NamedTuple):
    """How one cluster's backends are probed. `kind`: "http" (or "tcp" when the cluster turns
    out to be served by a TCP listener), "udp-tcp" (a UDP cluster's TCP_PROBE), "udp"
    (UDP_PROBE)."""

    kind: str
    interval: float
    timeout: float
    rise: int  # consecutive successes back to healthy
    fall: int  # consecutive failures to unhealthy
    uri: str = "/"
    expected_status: int = 0
    port: int | None = None  # TCP_PROBE: probe this port instead of the backend's
    payload: bytes = b""  # UDP_PROBE: the datagram sent

    @property
    def udp(self) -> bool:
        return self.kind.startswith("udp")


def http_plan(config: HealthCheckConfig) -> Plan:
    return Plan(
        "http",
        float(config.interval),
        float(config.timeout),
        config.healthy_threshold,
        config.unhealthy_threshold,
        uri=config.uri,
        expected_status=config.expected_status,
    )


def udp_plan(config: UdpHealthConfig) -> Plan | None:
    """None when the table turns probing off (`mode = "HEALTH_OFF"`). As sozu, a UDP_PROBE
    without a payload probes by TCP connect (the configuration loader warns)."""
    mode = UdpHealthMode.TCP_PROBE if config.mode is None else config.mode
    if mode == UdpHealthMode.HEALTH_OFF:
        return None
    payload = config.udp_probe_payload
    kind = "udp" if mode == UdpHealthMode.UDP_PROBE and payload else "udp-tcp"
    return Plan(
        kind,
        float(config.probe_interval_seconds or 5),
        float(config.probe_timeout_seconds or 2),
        config.rise or 2,
        config.fall or 3,
        port=config.tcp_port or None,
        payload=payload or b"",
    )
