"""`pysozu top` on a terminal: plain ANSI escapes (no curses), so it works over ssh.

cbreak mode (one key at a time, no echo; ctrl-C stays SIGINT), the alternate screen, a hidden
cursor; a redraw at each poll and on resize. `q`, `Q`, ctrl-C: exit 0; SIGTERM, SIGHUP (the ssh
session is gone): 128 + signal; main gone: 3; a terminal under the minimum size: 1. Every way
out gives the terminal back as found (cursor shown, main screen, saved termios), then says why.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable
from types import FrameType

from dataplane.cli.client import CommandError
from dataplane.cli.top_frame import MIN_HEIGHT, MIN_WIDTH, Poll, render

EXIT_FAILURE = 1
EXIT_UNREACHABLE = 3

ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, main screen


class Quit(Exception):
    """A signal asked us to leave (SIGTERM, SIGHUP: the ssh session is gone)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _too_small(fd: int) -> str | None:
    size = os.get_terminal_size(fd)
    if size.columns < MIN_WIDTH or size.lines < MIN_HEIGHT:
        return (
            f"terminal too small ({size.columns}x{size.lines}):"
            f" pysozu top needs at least {MIN_WIDTH}x{MIN_HEIGHT}"
        )
    return None


def interactive(ask: Callable[[], Poll], note: Callable[[], str], refresh_ms: int) -> int:
    """Draw what `ask` answers every `refresh_ms` until a key, a signal or an error ends it."""
    keys, screen = sys.stdin.fileno(), sys.stdout.fileno()
    if not (os.isatty(keys) and os.isatty(screen)):
        print(
            "pysozu: top draws on a terminal (stdin and stdout); for scripts use --snapshot N",
            file=sys.stderr,
        )
        return 2
    small = _too_small(screen)
    if small is not None:
        print(f"pysozu: {small}", file=sys.stderr)
        return EXIT_FAILURE
    saved = termios.tcgetattr(keys)

    def leave(signum: int, _frame: FrameType | None) -> None:
        raise Quit(signum)

    handlers = {s: signal.signal(s, leave) for s in (signal.SIGTERM, signal.SIGHUP)}
    code, message = 0, ""
    try:
        tty.setcbreak(keys)  # one key at a time, no echo; ctrl-C still raises KeyboardInterrupt
        os.write(screen, ENTER.encode())
        code, message = _loop(ask, note, refresh_ms, keys, screen)
    except KeyboardInterrupt:
        code = 0
    except Quit as leaving:
        code = 128 + leaving.signum
    except CommandError as error:
        code, message = EXIT_UNREACHABLE, f"main is gone: {error}"
    except OSError as error:  # the terminal went away
        code, message = EXIT_FAILURE, f"terminal: {error.strerror or error}"
    finally:
        try:
            os.write(screen, LEAVE.encode())
            termios.tcsetattr(keys, termios.TCSADRAIN, saved)
        except OSError:
            pass
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if message:
        print(f"pysozu: {message}", file=sys.stderr)
    return code


def _draw(screen: int, lines: list[str]) -> None:
    body = "\x1b[K\r\n".join(lines)
    os.write(screen, f"\x1b[?2026h\x1b[H{body}\x1b[K\x1b[J\x1b[?2026l".encode())


def _loop(
    ask: Callable[[], Poll], note: Callable[[], str], refresh_ms: int, keys: int, screen: int
) -> tuple[int, str]:
    """Poll, draw, wait for a key or the next poll; (exit status, message) when leaving."""
    before: Poll | None = None
    now = ask()
    size = os.get_terminal_size(screen)
    next_poll = time.monotonic() + refresh_ms / 1000
    while True:
        small = _too_small(screen)
        if small is not None:
            return EXIT_FAILURE, small
        size = os.get_terminal_size(screen)
        _draw(screen, render(now, before, size.columns, size.lines, refresh_ms, note()))
        while time.monotonic() < next_poll and os.get_terminal_size(screen) == size:
            ready, _, _ = select.select(
                [keys], [], [], min(0.2, max(0.0, next_poll - time.monotonic()))
            )
            if ready:
                typed = os.read(keys, 64)
                if not typed or any(key in typed for key in b"qQ\x03"):
                    return 0, ""
        if time.monotonic() >= next_poll:
            before, now = now, ask()
            next_poll = time.monotonic() + refresh_ms / 1000
