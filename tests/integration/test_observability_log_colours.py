"""`log_colored` and `access_logs_colored` on a real `pysozu start` whose stdout is read back:
sozu's ANSI colours on stdout, none in a file (as sozu)."""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

MAIN_INFO = "\x1b[0;1mMAIN \x1b[;32;1mINFO\x1b[m "
ACCESS = "\x1b[;35;1mINFO-ACCESS  \x1b[0;1mWRK-0"
STATUS_200 = "\x1b[32m200\x1b[m"


def _get(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": "app.com"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _start(pysozu: Any, backends: Any, head: str) -> tuple[Any, int]:
    listen = pysozu.free_port()
    toml = head + pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    return pysozu.start(toml), listen


def _until(read: Any, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    seen = read()
    while text not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = read()
    return str(seen)


def test_log_colored_colours_main_workers_and_access_lines_on_stdout(
    pysozu: Any, backends: Any
) -> None:
    proxy, listen = _start(pysozu, backends, "log_colored = true\n")
    assert _get(listen) == 200
    log = _until(proxy.log, ACCESS)
    assert MAIN_INFO in log, log
    assert "\x1b[0;1mWRK-00 \x1b[;32;1mINFO\x1b[m " in log, log
    assert ACCESS in log and STATUS_200 in log, log


def test_access_logs_colored_false_keeps_access_lines_plain(pysozu: Any, backends: Any) -> None:
    proxy, listen = _start(pysozu, backends, "log_colored = true\naccess_logs_colored = false\n")
    assert _get(listen) == 200
    log = _until(proxy.log, "INFO-ACCESS")
    assert MAIN_INFO in log, log
    access = [line for line in log.splitlines() if "INFO-ACCESS" in line]
    assert access and not any("\x1b[" in line for line in access), access


def test_no_colours_in_files(pysozu: Any, backends: Any, tmp_path: Path) -> None:
    main_log, access_log = tmp_path / "main.log", tmp_path / "access.log"
    head = (
        "log_colored = true\naccess_logs_colored = true\n"
        f'log_target = "file://{main_log}"\naccess_logs_target = "file://{access_log}"\n'
    )
    _, listen = _start(pysozu, backends, head)
    assert _get(listen) == 200
    text = _until(lambda: access_log.read_text() if access_log.exists() else "", "INFO-ACCESS")
    assert "INFO-ACCESS" in text and "\x1b[" not in text, text
    assert "MAIN INFO" in main_log.read_text() and "\x1b[" not in main_log.read_text()


def test_colours_are_off_by_default(pysozu: Any, backends: Any) -> None:
    proxy, listen = _start(pysozu, backends, "")
    assert _get(listen) == 200
    log = _until(proxy.log, "INFO-ACCESS")
    assert "INFO-ACCESS" in log and "\x1b[" not in log, log
