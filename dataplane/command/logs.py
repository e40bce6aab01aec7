"""Log lines of every pysozu process: `<ISO time> <pid> <TAG> <LEVEL> message`.

The tag is `MAIN` or `WRK-NN`, as in sozu. sozu's `log_level` is a RUST_LOG-like filter (`info`,
`sozu=debug,info`); the most verbose level named in it applies. `log_target` is `stdout`,
`stderr`, `file:///path`, or a network target as sozu's: `udp://ip:port` and `unix:///path` (a
unix datagram socket) take one line per datagram, `tcp://ip:port` a stream of lines. A log
line never blocks the process: one that finds the socket full, or nobody listening, is dropped
(`dropped` counts them), and a broken connection is opened again at most once a second.
`log_colored` colours the pid, the tag and the level with sozu's ANSI codes, on stdout and
stderr only (as sozu, which colours its stdout only).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from dataplane.command.log_targets import AccessLogTargetError, Target
from dataplane.command.log_targets import open_target as open_network_target

LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}

log = logging.getLogger("pysozu.logs")


class LogTargetError(ValueError):
    """The log target or level cannot be used."""


COLOURED_TARGETS = ("stdout", "stderr")  # as sozu: never colours in a file or a socket
# sozu's colours for each level (`log_colored`), and for the pid and the tag.
LEVEL_COLOURS = {
    logging.ERROR: "\x1b[;31;1m",
    logging.WARNING: "\x1b[;33;1m",
    logging.INFO: "\x1b[;32;1m",
    logging.DEBUG: "\x1b[;36m",
}


class _Formatter(logging.Formatter):
    def __init__(self, tag: str, coloured: bool = False) -> None:
        super().__init__()
        self.tag = tag
        self.coloured = coloured

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        level = "WARN" if record.levelno == logging.WARNING else record.levelname
        if self.coloured:
            colour = LEVEL_COLOURS.get(record.levelno, "\x1b[;90m")
            line = (
                f"{when} \x1b[;2;1m{os.getpid()} \x1b[0;1m{self.tag} {colour}{level}\x1b[m "
                f"{record.getMessage()}"
            )
        else:
            line = f"{when} {os.getpid()} {self.tag} {level} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def parse_level(spec: str) -> int:
    """The most verbose level in a filter such as `info` or `sozu=debug,warn`."""
    levels = []
    for directive in spec.replace(" ", "").split(","):
        name = directive.rpartition("=")[2].lower()
        if not name:
            continue
        if name not in LEVELS:
            raise LogTargetError(
                f"unknown log level {name!r} (expected one of error, warn, info, debug, trace)"
            )
        levels.append(LEVELS[name])
    if not levels:
        raise LogTargetError(f"no log level in {spec!r}")
    return min(levels)


def level_name(spec: str) -> str:
    """The plain level (`error`, `warn`, `info`, `debug`) a filter such as `sozu=debug` means."""
    return {
        logging.ERROR: "error",
        logging.WARNING: "warn",
        logging.INFO: "info",
        logging.DEBUG: "debug",
    }[parse_level(spec)]


def open_target(target: str) -> TextIO:
    if target in ("stdout", ""):
        return sys.stdout
    if target == "stderr":
        return sys.stderr
    if target.startswith("file://"):
        path = target.removeprefix("file://")
        try:
            return open(path, "a", buffering=1, encoding="utf-8")
        except OSError as error:
            raise LogTargetError(f"cannot open log file {path}: {error.strerror}") from None
    raise LogTargetError(f"log target {target!r} is not supported (use stdout or file:///path)")


NETWORK_TARGETS = ("udp://", "tcp://", "unix://")
MAX_PENDING = 64 * 1024  # a TCP target's bytes waiting for room; lines beyond are dropped
RETRY_EVERY = 1.0  # seconds between two attempts to open a broken network target again


class _NetworkHandler(logging.Handler):
    """Writes lines to a udp://, tcp:// or unix:// target without ever blocking."""

    def __init__(self, spec: str) -> None:
        super().__init__()
        try:
            self.target: Target = open_network_target(spec)
        except AccessLogTargetError as error:
            raise LogTargetError(str(error)) from None
        self.pending = b""  # TCP: the rest of a line the socket took only part of
        self.dropped = 0
        self._retry_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:  # logging's contract: emit never raises
            self.handleError(record)
            return
        self.send(line)

    def send(self, line: bytes) -> None:
        target = self.target
        if target.datagram:
            data = line
        elif len(self.pending) + len(line) > MAX_PENDING:
            self.dropped += 1
            data = self.pending
        else:
            data = self.pending + line
        try:
            sent = target.write(data) if data else 0
        except BlockingIOError:
            sent = 0
        except OSError:  # nobody listens, or the connection broke: drop, reopen later
            self.dropped += 1
            self.pending = b""
            self._reopen()
            return
        if target.datagram:
            if not sent:
                self.dropped += 1
        else:
            self.pending = data[sent:]

    def _reopen(self) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            return
        self._retry_at = now + RETRY_EVERY
        with contextlib.suppress(AccessLogTargetError):  # tried again after the next line
            self.target.reopen()

    def close(self) -> None:
        self.target.close()
        super().close()


class _TargetHandler(logging.StreamHandler[TextIO]):
    """Writes to a log target; a file target can be opened again after logrotate moved it."""

    def __init__(self, target: str) -> None:
        super().__init__(open_target(target))
        self.target = target

    def reopen(self) -> None:
        if not self.target.startswith("file://"):
            return
        old = self.setStream(open_target(self.target))
        if old is not None:
            old.close()


def reopen_log_file() -> None:
    """SIGUSR1: open the log file again (the old one was renamed); stdout needs nothing.
    A file that cannot be opened is reported on the one in use, which stays in use."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _TargetHandler):
            try:
                handler.reopen()
            except LogTargetError as error:
                log.error("%s: still logging to the previous file", error)


def setup_logging(target: str, level: str, tag: str = "MAIN", colored: bool = False) -> None:
    """Route this process's logs to `target` at `level` (replacing any earlier setup);
    `colored` (sozu's `log_colored`) only colours stdout and stderr."""
    handler: logging.Handler
    if target.startswith(NETWORK_TARGETS):
        handler = _NetworkHandler(target)
    else:
        handler = _TargetHandler(target)
    handler.setFormatter(_Formatter(tag, colored and target in COLOURED_TARGETS))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, _NetworkHandler):  # its socket is ours
            old.close()
    root.addHandler(handler)
    root.setLevel(parse_level(level))


def set_level(spec: str) -> None:
    logging.getLogger().setLevel(parse_level(spec))
