"""Access logs of a real `pysozu start`: one line per request, sozu's ASCII layout or JSON lines,
read back field by field; a file target reopened on SIGUSR1 (logrotate)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

ASCII = re.compile(
    r"(?P<time>\S+Z) (?P<nanos>\d+) (?P<pid>\d+) (?P<level>INFO-ACCESS |ERROR-ACCESS) "
    r"(?P<tag>WRK-\d\d)\t\[(?P<session>\S+) (?P<request>\S+) (?P<cluster>\S+) (?P<backend>\S+)\] "
    r"(?P<client_address>\S+) (?P<backend_address>\S+) "
    r"(?P<request_time>\S+)/(?P<service_time>\S+)/(?P<response_time>\S+)/-/- "
    r"(?P<bytes_in>\d+) (?P<bytes_out>\d+) \[(?P<tags>[^\]]*)\] None (?P<protocol>\S+) "
    r"(?P<host>\S+) (?P<method>\S+) (?P<path>\S+) (?P<status>\S+)(?: \| (?P<message>.*))?"
)
UNITS = {"ns": 1e-9, "μs": 1e-6, "ms": 1e-3, "s": 1.0}


def seconds(text: str) -> float | None:
    if text == "-":
        return None
    found = re.fullmatch(r"(\d+)(ns|μs|ms|s)", text)
    assert found, text
    return int(found.group(1)) * UNITS[found.group(2)]


def parse_ascii(line: str) -> dict[str, Any]:
    found = ASCII.fullmatch(line)
    assert found, line
    fields: dict[str, Any] = {k: (None if v == "-" else v) for k, v in found.groupdict().items()}
    for name in ("request_time", "service_time", "response_time"):
        fields[name] = seconds(found.group(name))
    fields["status"] = int(found.group("status")) if found.group("status") != "-" else None
    fields["error"] = found.group("level") == "ERROR-ACCESS"
    fields["cluster_id"], fields["backend_id"] = fields.pop("cluster"), fields.pop("backend")
    fields["user_agent"] = (found.group("tags").partition("user-agent=")[2]) or None
    return fields


def parse_json(line: str) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(line)
    fields["level"] = "ERROR-ACCESS" if fields["error"] else "INFO-ACCESS "
    return fields


def lines_of(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The file's lines once it has at least `count` (written once per worker loop turn)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def get(port: int, host: str, path: str = "/", agent: str = "obs-test/1.0") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host, "User-Agent": agent})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def start(pysozu: Any, backends: Any, tmp_path: Path, log_format: str) -> tuple[Any, int, Path]:
    listen = pysozu.free_port()
    log_path = tmp_path / "access.log"
    toml = (
        f'access_logs_target = "file://{log_path}"\n'
        f'access_logs_format = "{log_format}"\n'
        + pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
        + '\n[clusters.empty]\nprotocol = "http"\nbackends = []\n'
        f'frontends = [{{ address = "127.0.0.1:{listen}", hostname = "empty.com" }}]\n'
    )
    return pysozu.start(toml), listen, log_path


@pytest.mark.parametrize("log_format", ["ascii", "json"])
def test_one_line_per_request(pysozu: Any, backends: Any, tmp_path: Path, log_format: str) -> None:
    _proxy, listen, log_path = start(pysozu, backends, tmp_path, log_format)
    assert get(listen, "app.com", "/hello?x=1", agent="obs test [1.0]") == 200
    assert get(listen, "empty.com", "/nothing") == 503
    assert get(listen, "nowhere.com", "/lost") == 404
    lines = lines_of(log_path, 3)
    assert len(lines) == 3, lines
    parse = parse_ascii if log_format == "ascii" else parse_json
    records = {record["status"]: record for record in map(parse, lines)}

    ok = records[200]
    assert (ok["method"], ok["path"], ok["host"]) == ("GET", "/hello?x=1", "app.com")
    assert (ok["cluster_id"], ok["backend_id"], ok["error"]) == ("app", "app-1", False)
    assert ok["backend_address"].startswith("127.0.0.1:")
    assert ok["client_address"].startswith("127.0.0.1:")
    assert ok["level"] == "INFO-ACCESS "
    assert 0 <= ok["response_time"] <= ok["request_time"] < 5
    assert ok["service_time"] is not None and ok["service_time"] >= 0
    assert int(ok["bytes_in"]) > 0 and int(ok["bytes_out"]) > 0
    expected_agent = "obs_test_{1.0}" if log_format == "ascii" else "obs test [1.0]"
    assert ok["user_agent"] == expected_agent

    failed = records[503]
    assert (failed["cluster_id"], failed["backend_id"], failed["error"]) == ("empty", None, True)
    assert failed["level"] == "ERROR-ACCESS"
    assert failed["message"] == "no backend available"
    assert failed["response_time"] is None

    lost = records[404]
    assert (lost["cluster_id"], lost["path"], lost["error"]) == (None, "/lost", False)


def test_sigusr1_reopens_the_file(pysozu: Any, backends: Any, tmp_path: Path) -> None:
    proxy, listen, log_path = start(pysozu, backends, tmp_path, "ascii")
    for _ in range(3):
        assert get(listen, "app.com") == 200
    assert len(lines_of(log_path, 3)) == 3
    rotated = tmp_path / "access.log.1"
    os.rename(log_path, rotated)  # what logrotate does, then its postrotate sends SIGUSR1
    os.kill(proxy.process.pid, signal.SIGUSR1)
    time.sleep(1.5)  # each worker reopens at its next loop turn (at most a second away)
    for _ in range(4):
        assert get(listen, "app.com", "/after") == 200
    fresh = lines_of(log_path, 4)
    assert len(fresh) == 4 and all(parse_ascii(line)["path"] == "/after" for line in fresh)
    assert len(rotated.read_text(encoding="utf-8").splitlines()) == 3
    assert proxy.process.poll() is None
    assert len(proxy.workers()) == 2  # nobody died of the signal
    assert "SIGUSR1" in proxy.log()


def _rotated_logs(
    pysozu: Any, backends: Any, tmp_path: Path, access_log: Path, done: str, count: int
) -> tuple[Any, int, str]:
    """pysozu logging to a file at info, that file moved away and SIGUSR1 sent to main: the
    proxy, its port and the new file's text once it holds `count` lines with `done`."""
    main_log = tmp_path / "pysozu.log"
    listen = pysozu.free_port()
    toml = (
        f'log_target = "file://{main_log}"\nlog_level = "info"\n'
        f'access_logs_target = "file://{access_log}"\n'
        + pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    )
    proxy = pysozu.start(toml)
    assert get(listen, "app.com") == 200
    os.rename(main_log, tmp_path / "pysozu.log.1")
    os.kill(proxy.process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5.0
    text = ""
    while time.monotonic() < deadline and text.count(done) < count:
        assert get(listen, "app.com") == 200  # a request wakes each worker's loop
        time.sleep(0.1)
        text = main_log.read_text(encoding="utf-8") if main_log.exists() else ""
    return proxy, listen, text


def test_sigusr1_reopens_the_log_files_of_main_and_workers(
    pysozu: Any, backends: Any, tmp_path: Path
) -> None:
    _, _, text = _rotated_logs(
        pysozu, backends, tmp_path, tmp_path / "access.log", "reopening the access log", 2
    )
    assert "MAIN INFO received SIGUSR1: log file reopened, forwarding to 2 workers" in text, text
    assert "WRK-00 INFO SIGUSR1" in text and "WRK-01 INFO SIGUSR1" in text, text
    rotated = (tmp_path / "pysozu.log.1").read_text(encoding="utf-8")
    assert "ready" in rotated  # what came before stays there


def test_a_worker_without_access_logs_still_reopens_its_log_file(
    pysozu: Any, backends: Any, tmp_path: Path
) -> None:
    missing = tmp_path / "missing" / "access.log"  # cannot be opened: access logs are off
    _, listen, text = _rotated_logs(
        pysozu, backends, tmp_path, missing, "INFO SIGUSR1: log file reopened", 2
    )
    assert "access logs disabled" in (tmp_path / "pysozu.log.1").read_text(encoding="utf-8")
    assert "WRK-00 INFO SIGUSR1: log file reopened" in text, text
    assert "WRK-01 INFO SIGUSR1: log file reopened" in text, text
    assert get(listen, "app.com") == 200
