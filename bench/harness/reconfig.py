"""Hot reconfiguration of pysozu under load.

Two measurements:
- latency: time from starting `pysozu backend add` (the CLI a user runs) to the first request
  answered through the new backend, on a cluster that had no backend (503 until then);
- churn: backend changes applied at a fixed rate through the command socket while wrk runs.
  The churn does not use the CLI: 20 interpreter start-ups per second would measure the CLI's
  start-up on the load generator's core rather than the proxy.

The command socket client speaks the wire format in the stdlib (8-byte little-endian length
counting itself, then JSON), so that the harness needs nothing from pysozu's code.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.configs import reconfiguration_host
from harness.errors import TargetFailed
from harness.procs import http_status
from harness.results import LatencySample

_PREFIX = struct.Struct("<Q")
_PROCESSING, _OK = 1, 0
_MAX_FRAME = 16 << 20


def wire_address(host: str, port: int) -> dict[str, Any]:
    return {"ip": {"inner": {"V4": int(ipaddress.IPv4Address(host))}}, "port": port}


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _PREFIX.pack(len(body) + _PREFIX.size) + body


def backend_request(verb: str, cluster_id: str, backend_id: str, port: int) -> dict[str, Any]:
    body = {
        "cluster_id": cluster_id,
        "backend_id": backend_id,
        "address": wire_address("127.0.0.1", port),
    }
    return {"request_type": {verb.upper(): body}}


class CommandClient:
    """One connection to pysozu's command socket; one request at a time."""

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        self._sock.connect(str(path))
        self._buffer = b""

    def close(self) -> None:
        self._sock.close()

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its final (non-PROCESSING) response."""
        self._sock.sendall(frame(request))
        while True:
            response = self._read_frame()
            if response.get("status") != _PROCESSING:
                return response

    def _read_frame(self) -> dict[str, Any]:
        while True:
            if len(self._buffer) >= _PREFIX.size:
                (length,) = _PREFIX.unpack_from(self._buffer)
                if not _PREFIX.size <= length <= _MAX_FRAME:
                    raise TargetFailed(f"pysozu sent a frame of {length} bytes")
                if len(self._buffer) >= length:
                    body, self._buffer = self._buffer[_PREFIX.size : length], self._buffer[length:]
                    return dict(json.loads(body))
            chunk = self._sock.recv(65536)
            if not chunk:
                raise TargetFailed("pysozu closed the command socket")
            self._buffer += chunk


class Churn:
    """Adds then removes a backend of `cluster_id` at `rate` changes per second, in a thread."""

    def __init__(self, socket_path: Path, cluster_id: str, backend_port: int, rate: int) -> None:
        try:
            self._client = CommandClient(socket_path)
        except OSError as error:
            raise TargetFailed(f"cannot connect to pysozu's command socket: {error}") from None
        self._cluster_id, self._port, self._rate = cluster_id, backend_port, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)
        self.applied = self.failed = 0

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._client.close()

    def _run(self) -> None:
        interval, change = 1.0 / self._rate, 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            verb = "add_backend" if change % 2 == 0 else "remove_backend"
            request = backend_request(verb, self._cluster_id, f"churn-{change // 2}", self._port)
            try:
                ok = self._client.call(request).get("status") == _OK
            except (OSError, TargetFailed, ValueError):
                ok = False
            self.applied += ok
            self.failed += not ok
            change += 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))


Change = Callable[[str], Callable[[], str | None]]
"""Starts adding the backend to a cluster; the returned function waits for the change to finish
and returns an error message, or None."""


def cli_change(cli: Sequence[str], backend_port: int, timeout_s: float = 30.0) -> Change:
    """The change as a user makes it: `pysozu backend add` (interpreter start-up included)."""

    def start(cluster_id: str) -> Callable[[], str | None]:
        argv = [*cli, "backend", "add", "--id", cluster_id, "--backend-id", "new",
                "--address", f"127.0.0.1:{backend_port}"]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def finish() -> str | None:
            try:
                _, stderr = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                return "the CLI timed out"
            return stderr.decode(errors="replace").strip()[-300:] if proc.returncode else None

        return finish

    return start


def socket_change(client: CommandClient, backend_port: int) -> Change:
    """The change as an operator makes it: one request on an open command socket."""

    def start(cluster_id: str) -> Callable[[], str | None]:
        answer = client.call(backend_request("add_backend", cluster_id, "new", backend_port))
        error = None if answer.get("status") == _OK else str(answer.get("message"))
        return lambda: error

    return start


def measure_latency(
    change: Change, proxy_port: int, cluster_ids: Sequence[str], timeout_s: float = 10.0
) -> LatencySample:
    """For each cluster (a frontend `<id>.bench.test` and no backend, so 503): start the change,
    then request through the proxy until the new backend answers 200."""
    sample = LatencySample()
    for cluster_id in cluster_ids:
        host = reconfiguration_host(cluster_id)
        started = time.monotonic()
        finish = change(cluster_id)
        routed = None
        while time.monotonic() - started < timeout_s:
            if http_status(proxy_port, host) == 200:
                routed = time.monotonic() - started
                break
        error = finish() or (None if routed is not None else "never routed to the new backend")
        if error is not None:
            sample.failures += 1
            sample.first_error = sample.first_error or error
        elif routed is not None:
            sample.seconds.append(routed)
    return sample


def latencies(
    cli: Sequence[str],
    socket_path: Path,
    proxy_port: int,
    backend_port: int,
    cluster_ids: Sequence[str],
) -> dict[str, LatencySample]:
    """Latency of `pysozu backend add` as a user types it (first half of the clusters), and of
    the same request on an open command socket, as an operator sends it (second half): the gap
    is the CLI's start-up."""
    half = len(cluster_ids) // 2
    samples = {
        "`pysozu backend add` (CLI)": measure_latency(
            cli_change(cli, backend_port), proxy_port, cluster_ids[:half]
        )
    }
    client = CommandClient(socket_path)
    try:
        samples["AddBackend on the command socket"] = measure_latency(
            socket_change(client, backend_port), proxy_port, cluster_ids[half:]
        )
    finally:
        client.close()
    return samples
