"""`audit_logs_target` / `audit_logs_json_target`: one record per state-changing request, in
sozu's shape, naming who asked (SO_PEERCRED), what, and how it ended."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

TEXT_LINE = re.compile(
    r"^\[(?P<session>[0-9A-Z]{26}) (?P<request>[0-9A-Z]{26}) (?P<cluster>\S+) (?P<backend>\S+)\]"
    r"\tAUDIT\tCommand\(ts=\S+Z, verb=(?P<verb>\w+), actor_uid=(?P<uid>\w+), actor_gid=\w+, "
    r"actor_pid=(?P<pid>\w+), actor_role=\w+, actor_user=\S+, actor_comm=\S+, client_id=\d+, "
    r"connect_ts=\S+Z, socket=\S+, target=(?P<target>.*), result=(?P<result>ok|err)"
    r"(?P<extras>.*), sozu_version=\S+, build_git_sha=\w+, boot_generation=\d+\)$"
)


def wait_for_lines(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def cli(proxy: Any, *args: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run the CLI; its pid too (the audit record must name it)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dataplane", "-c", str(proxy.config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=proxy.directory,
    )
    out, err = process.communicate(timeout=30)
    return process.pid, subprocess.CompletedProcess(process.args, process.returncode, out, err)


def config(pysozu: Any, head: str) -> str:
    port = pysozu.free_port()
    return head + pysozu.http_config(port, {"app": ("example.com", [pysozu.free_port()])})


def test_state_changes_are_audited_in_text_and_json_files(pysozu: Any) -> None:
    head = 'audit_logs_target = "audit.log"\naudit_logs_json_target = "audit.jsonl"\n'
    proxy = pysozu.start(config(pysozu, head))
    text_path, json_path = proxy.directory / "audit.log", proxy.directory / "audit.jsonl"
    pid, added = cli(proxy, "cluster", "add", "--id", "audited")
    assert added.returncode == 0, added.stderr
    assert cli(proxy, "status")[1].returncode == 0  # a query: no record
    failed_pid, _failed = cli(
        proxy, "backend", "remove", "--id", "nope", "--backend-id", "b", "--address", "127.0.0.1:1"
    )
    lines = wait_for_lines(text_path, 2)
    assert len(lines) == 2, lines
    first = TEXT_LINE.match(lines[0])
    assert first is not None, lines[0]
    assert first["verb"] == "cluster_added" and first["result"] == "ok"
    assert first["uid"] == "0" and first["pid"] == str(pid)
    assert first["target"] == "cluster:audited" and first["cluster"] == "audited"
    assert "request_sha256=" in first["extras"] and "elapsed_ms=" in first["extras"]
    second = TEXT_LINE.match(lines[1])
    assert second is not None, lines[1]
    assert second["verb"] == "backend_removed" and second["result"] == "err"
    assert second["pid"] == str(failed_pid)
    assert "error_code=" in second["extras"] and "reason=" in second["extras"]

    records = [json.loads(line) for line in wait_for_lines(json_path, 2)]
    assert [r["verb"] for r in records] == ["cluster_added", "backend_removed"]
    record = records[0]
    assert record["actor"]["uid"] == 0 and record["actor"]["pid"] == pid
    assert record["actor"]["role"] == "root" and record["actor"]["comm"]
    assert record["result"] == "ok" and record["cluster_id"] == "audited"
    assert record["socket"] == proxy.socket_path
    assert record["session_ulid"] == first["session"]
    assert set(record) >= {"ts", "request_ulid", "client_id", "connect_ts", "target", "extras"}
    assert records[1]["result"] == "err" and records[1]["extras"]["error_code"]
    assert stat_mode(text_path) == 0o640
    assert "\tAUDIT\tCommand(" in proxy.log()  # main's own log has the line too


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_a_refused_uid_is_audited(pysozu: Any) -> None:
    head = 'command_allowed_uids = [0]\naudit_logs_json_target = "audit.jsonl"\n'
    proxy = pysozu.start(config(pysozu, head))
    os.chmod(proxy.directory, 0o755)
    os.chmod(proxy.socket_path, 0o666)
    refused = subprocess.run(
        [*AS_NOBODY, sys.executable, "-m", "dataplane", "-c", str(proxy.config_path), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert refused.returncode != 0
    (line,) = wait_for_lines(proxy.directory / "audit.jsonl", 1)
    record = json.loads(line)
    assert record["actor"]["uid"] == 65534 and record["actor"]["role"] == "user"
    assert record["verb"] == "status" and record["result"] == "err"
    assert record["extras"]["error_code"] == "unauthorized"
    assert "not in command_allowed_uids" in record["extras"]["reason"]


def test_json_records_to_a_udp_target(pysozu: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        port = receiver.getsockname()[1]
        proxy = pysozu.start(config(pysozu, f'audit_logs_json_target = "udp://127.0.0.1:{port}"\n'))
        assert proxy.cli("logging", "debug").returncode == 0
        record = json.loads(receiver.recv(65536))
    assert record["verb"] == "logging_level_changed" and record["target"] == "logging:debug"


def test_a_target_that_cannot_be_opened_stops_the_start(pysozu: Any) -> None:
    head = 'audit_logs_target = "/nonexistent-dir/audit.log"\n'
    proxy = pysozu.start(config(pysozu, head), wait=False)
    assert proxy.process.wait(timeout=20) == 1
    assert "audit_logs_target: cannot open" in proxy.log()
