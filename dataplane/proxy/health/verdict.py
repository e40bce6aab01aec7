"""Health checks without I/O: what a probe sends, how its answer is judged, and the verdict.

- `http_request(uri, host)`: `GET <uri> HTTP/1.1` with `Connection: close`, as sozu sends.
- `HttpAnswer`: fed the bytes a backend sends back, it finds the status line (at most
  `MAX_STATUS_LINE` bytes are looked at: a backend cannot make a probe hold more) and says
  whether the status passes: the configured `expected_status`, or any 2xx when it is 0.
- `Verdict`: one backend's health with its thresholds. Every backend starts healthy; it turns
  unhealthy after `unhealthy_threshold` consecutive failed probes and healthy again after
  `healthy_threshold` consecutive successes. `record` answers the new state when it changed.
"""

from __future__ import annotations

import re

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
