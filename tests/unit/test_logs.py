"""The log lines of main and workers: their target, their level, and logrotate."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.command.logs import (
    LogTargetError,
    level_name,
    parse_level,
    reopen_log_file,
    setup_logging,
)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_levels_as_sozu_filters_name_them() -> None:
    assert parse_level("sozu=debug,warn") == logging.DEBUG
    assert level_name("trace") == "debug" and level_name("warning") == "warn"
    with pytest.raises(LogTargetError, match="unknown log level 'loud'"):
        parse_level("loud")


def test_lines_carry_time_pid_tag_and_level(tmp_path: Path) -> None:
    path = tmp_path / "main.log"
    setup_logging(f"file://{path}", "info", "WRK-03")
    logging.getLogger("x").warning("disk %s", "full")
    logging.getLogger("x").debug("not shown")
    (line,) = path.read_text().splitlines()
    when, pid, tag, level, message = line.split(" ", 4)
    assert when.endswith("+00:00") and pid == str(os.getpid())
    assert (tag, level, message) == ("WRK-03", "WARN", "disk full")


def test_reopen_after_logrotate_moved_the_file(tmp_path: Path) -> None:
    path = tmp_path / "main.log"
    setup_logging(f"file://{path}", "info")
    logging.getLogger("x").info("before")
    os.rename(path, tmp_path / "main.log.1")
    reopen_log_file()
    logging.getLogger("x").info("after")
    assert "before" in (tmp_path / "main.log.1").read_text()
    assert "after" in path.read_text() and "before" not in path.read_text()


def test_a_file_that_cannot_be_reopened_keeps_the_old_one(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "main.log"
    setup_logging(f"file://{path}", "info")
    os.rename(path, tmp_path / "main.log.1")
    directory.rmdir()  # the new file cannot be created
    reopen_log_file()
    logging.getLogger("x").info("still here")
    text = (tmp_path / "main.log.1").read_text()
    assert "cannot open log file" in text and "still here" in text
