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


def setup_logging(target: str, level: str, tag: str = "MAIN") -> None:
    """Route this process's logs to `target` at `level` (replacing any earlier setup)."""
    fallback = target.startswith(NETWORK_TARGETS)
    stream = open_target("stdout" if fallback else target)
    handler = logging.StreamHandler(stream)
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
