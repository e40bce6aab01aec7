"""`pysozu top` against a running pysozu, through a pseudo-terminal (stdlib `pty`).

Each test reads the terminal with `os.read` under a deadline: the frame shows the cluster and
a non-zero request rate while traffic flows, `q` and ctrl-C quit with status 0, and every way
out (main gone, terminal too small) gives the terminal back: cursor shown, main screen.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

LEAVE = b"\x1b[?25h\x1b[?1049l"
METRICS = '[metrics]\naddress = "127.0.0.1:8125"\ndetail = "BACKEND"\n'


class Terminal:
    """`pysozu top` run on the slave side of a pty of `columns` x `lines`."""

    def __init__(
        self, opened: list[Terminal], proxy: Any, *args: str, columns: int = 120, lines: int = 30
    ) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: pysozu top on the pty
            argv = [sys.executable, "-m", "dataplane", "-c", str(proxy.config_path), "top", *args]
            # A shell without job control starts background jobs with SIGINT ignored, and
            # an ignored signal stays ignored across exec: ctrl-C must reach top as it would.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.seen = b""
        opened.append(self)

    def read_until(self, done: Any, timeout: float = 15.0) -> bytes:
        """Read until `done(seen)` is true or the child closed the pty; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in {timeout} s: {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the child is gone
                break
            if not data:
                break
            self.seen += data
        return self.seen

    def exit_status(self, timeout: float = 10.0) -> int:
        self.read_until(lambda seen: False, timeout)  # until the child closes the pty
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return os.waitstatus_to_exitcode(status)

    def line_mode(self) -> bool:
        """The pty's line discipline has echo and canonical input (as before top ran)."""
        lflag = termios.tcgetattr(self.fd)[3]
        return bool(lflag & termios.ECHO and lflag & termios.ICANON)

    def close(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Every `Terminal` a test opens; a top still running at the end is killed."""
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def _traffic(pysozu: Any, port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        pysozu.http_get(port, "top.com")


def _proxy(pysozu: Any, backends: Any) -> tuple[Any, int]:
    port = pysozu.free_port()
    backend = backends.start("t")
    config = METRICS + pysozu.http_config(port, {"shop": ("top.com", [backend])})
    return pysozu.start(config), port


def test_top_shows_the_cluster_and_its_request_rate_then_q_quits(
    pysozu: Any, backends: Any, terminals: list[Terminal]
) -> None:
    proxy, port = _proxy(pysozu, backends)
    stop = threading.Event()
    sender = threading.Thread(target=_traffic, args=(pysozu, port, stop), daemon=True)
    sender.start()
    try:
        terminal = Terminal(terminals, proxy, "--refresh-ms", "300")
        # a frame whose cluster row has a non-zero rate: "shop  <rate>" with rate > 0
        seen = terminal.read_until(
            lambda seen: any(
                line.startswith(b"shop ") and line.split()[1] not in (b"-", b"0.0")
                for line in seen.replace(b"\x1b[K", b"").split(b"\r\n")
            )
        )
    finally:
        stop.set()
        sender.join(timeout=10)
    assert b"\x1b[?1049h" in seen and b"\x1b[?25l" in seen  # alternate screen, cursor hidden
    assert b"WORKER" in seen and b"RUNNING" in seen and b"shop-1" in seen
    assert not terminal.line_mode()  # keys one by one, no echo, while top runs
    os.write(terminal.fd, b"q")
    assert terminal.exit_status() == 0
    assert terminal.seen.endswith(LEAVE) and terminal.line_mode()


def test_ctrl_c_quits_and_gives_the_terminal_back(
    pysozu: Any, backends: Any, terminals: list[Terminal]
) -> None:
    proxy, _ = _proxy(pysozu, backends)
    terminal = Terminal(terminals, proxy, "--refresh-ms", "200")
    terminal.read_until(lambda seen: b"CLUSTER" in seen)
    os.write(terminal.fd, b"\x03")  # the pty's line discipline turns it into SIGINT
    assert terminal.exit_status() == 0
    assert terminal.seen.endswith(LEAVE) and terminal.line_mode()


def test_main_gone_exits_3_with_a_message_on_the_restored_screen(
    pysozu: Any, backends: Any, terminals: list[Terminal]
) -> None:
    proxy, _ = _proxy(pysozu, backends)
    terminal = Terminal(terminals, proxy, "--refresh-ms", "200")
    terminal.read_until(lambda seen: b"CLUSTER" in seen)
    proxy.stop()
    assert terminal.exit_status(timeout=20) == 3
    after = terminal.seen.rpartition(LEAVE)[2]
    assert LEAVE in terminal.seen and b"main is gone" in after, terminal.seen[-500:]
    assert terminal.line_mode()


def test_a_terminal_too_small_is_refused_with_the_size_it_needs(
    pysozu: Any, backends: Any, terminals: list[Terminal]
) -> None:
    proxy, _ = _proxy(pysozu, backends)
    terminal = Terminal(terminals, proxy, columns=40, lines=8)
    assert terminal.exit_status() == 1
    assert b"terminal too small (40x8)" in terminal.seen
    assert b"\x1b[?1049h" not in terminal.seen  # the screen was never taken


def test_snapshot_prints_frames_without_a_terminal(
    pysozu: Any, backends: Any, terminals: list[Terminal]
) -> None:
    proxy, port = _proxy(pysozu, backends)
    for _ in range(5):
        assert pysozu.http_get(port, "top.com") == (200, b"t")
    done = proxy.cli("top", "--snapshot", "2", "--refresh-ms", "200", "--skin", "dark")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("pysozu top ") == 2 and "\x1b" not in done.stdout
    assert "shop " in done.stdout and "shop-1" in done.stdout
    assert "--skin: " in done.stderr  # accepted, and said to change nothing
    once = proxy.cli("top", "--tick-once", "--refresh-ms", "200")
    assert once.returncode == 0 and once.stdout.count("pysozu top ") == 1, once.stderr


def test_top_without_a_terminal_points_to_snapshot(
    pysozu: Any, backends: Any, terminals: list[Terminal]
) -> None:
    proxy, _ = _proxy(pysozu, backends)
    done = subprocess.run(
        [sys.executable, "-m", "dataplane", "-c", str(proxy.config_path), "top"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and "--snapshot" in done.stderr
