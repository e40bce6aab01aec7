"""Process control: every process the harness starts is pinned, tracked, and stopped on exit.

Each process is started in its own session (process group), so stopping it also stops the
workers it forked, and nothing outlives the run: stop_all() runs on normal exit, on an error,
on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from harness import procfs
from harness.errors import TargetFailed

_MAX_RESPONSE = 1 << 20
_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """argv run under `taskset -c cpus` (no pinning when cpus is None)."""
    return ["taskset", "-c", cpus, *argv] if cpus is not None else list(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Supervisor:
    """Owns the processes of one benchmark run."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpus: str | None,
        stdout: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start argv (pinned to cpus) in a session of its own, output appended to files named
        after it in the log directory (stdout to `stdout` when given)."""
        with (
            open(stdout or self.logdir / f"{name}.out", "ab") as out,
            open(self.logdir / f"{name}.err", "ab") as err,
        ):
            proc = subprocess.Popen(
                pinned(argv, cpus),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after grace_s, then SIGKILL any descendant that
        lives on in a group of its own (pysozu's workers have their own sessions)."""
        if proc in self._procs:
            self._procs.remove(proc)
        descendants = procfs.identities(procfs.process_tree(proc.pid)[1:])
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid, started in procfs.identities(list(descendants)).items():
            if descendants[pid] == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)

    def stderr_tail(self, name: str) -> str:
        """The last lines a process wrote on stderr (a traceback's last line says the most)."""
        path = self.logdir / f"{name}.err"
        return last_lines(path.read_text(errors="replace")) if path.exists() else ""


def last_lines(text: str, lines: int = 4, limit: int = 400) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-limit:]


@contextlib.contextmanager
def supervised(logdir: Path) -> Iterator[Supervisor]:
    """A Supervisor whose processes are stopped however the block ends (SIGTERM included)."""
    supervisor = Supervisor(logdir)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield supervisor
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            supervisor.stop_all()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous)


def http_get(
    port: int,
    host: str,
    path: str = "/",
    *,
    tls: bool = False,
    timeout_s: float = 2.0,
    max_bytes: int = _MAX_RESPONSE,
) -> tuple[int, bytes] | None:
    """(status, body) of one `Connection: close` GET on 127.0.0.1:port, HTTPS without
    certificate verification when tls, read up to about max_bytes; None when nothing answers
    an HTTP response."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    chunks, size = [], 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw:
            sock = _UNVERIFIED.wrap_socket(raw, server_hostname=host) if tls else raw
            sock.sendall(request)
            while size < max_bytes and (chunk := sock.recv(262144)):
                chunks.append(chunk)
                size += len(chunk)
    except (OSError, ssl.SSLError):
        if not chunks:
            return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1]), body


def accepts(port: int) -> bool:
    """Does 127.0.0.1:port accept a TCP connection?"""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def http_status(port: int, host: str, path: str = "/", *, tls: bool = False) -> int | None:
    answer = http_get(port, host, path, tls=tls)
    return None if answer is None else answer[0]


def udp_exchange(port: int, payload: bytes, timeout_s: float = 0.5) -> bytes | None:
    """The first reply to one datagram sent to 127.0.0.1:port, or None (silence, refusal)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(("127.0.0.1", port))
            sock.send(payload)
            return sock.recv(65536)
        except OSError:
            return None


def wait_until(
    ready: Callable[[], bool],
    *,
    proc: subprocess.Popen[bytes],
    what: str,
    timeout_s: float,
) -> None:
    """Poll ready() until true; fail early if proc exits, late after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetFailed(f"{what} exited with status {proc.returncode}")
        if ready():
            return
        time.sleep(0.05)
    raise TargetFailed(f"{what} not ready after {timeout_s:.0f} s")
