"""Log lines of every pysozu process: `<ISO time> <pid> <TAG> <LEVEL> message`.

The tag is `MAIN` or `WRK-NN`, as in sozu. sozu's `log_level` is a RUST_LOG-like filter (`info`,
`sozu=debug,info`); the most verbose level named in it applies. `log_target` is `stdout`,
`stderr` or `file:///path`; the network targets sozu knows (udp://, tcp://, unix://) are not
implemented for these lines (access logs have them): the process logs to stdout and says so.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

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


class _Formatter(logging.Formatter):
    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        level = "WARN" if record.levelno == logging.WARNING else record.levelname
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


def setup_logging(target: str, level: str, tag: str = "MAIN") -> None:
    """Route this process's logs to `target` at `level` (replacing any earlier setup)."""
    fallback = target.startswith(NETWORK_TARGETS)
    handler = _TargetHandler("stdout" if fallback else target)
    handler.setFormatter(_Formatter(tag))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    if fallback:
        log.warning("log target %s is not supported yet: logging to stdout", target)


def set_level(spec: str) -> None:
    logging.getLogger().setLevel(parse_level(spec))
