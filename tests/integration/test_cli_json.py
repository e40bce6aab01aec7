"""`--json` against a running pysozu: enum values by name, and JSON on every kind of error."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


def test_answers_name_their_enum_values(pysozu: Any) -> None:
    port = pysozu.free_port()
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [pysozu.free_port()])}))
    status = proxy.cli("-j", "status")
    answer = json.loads(status.stdout)
    assert answer["status"] == "OK"
    workers = answer["content"]["content_type"]["WORKERS"]["vec"]
    assert {w["run_state"] for w in workers} == {"RUNNING"}
    listed = json.loads(proxy.cli("-j", "cluster", "list", "-i", "app").stdout)
    main = listed["content"]["content_type"]["WORKER_RESPONSES"]["map"]["main"]
    cluster = main["content_type"]["CLUSTERS"]["vec"][0]["configuration"]
    assert cluster["load_balancing"] == "ROUND_ROBIN"


def test_a_failed_request_is_json(pysozu: Any) -> None:
    port = pysozu.free_port()
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [pysozu.free_port()])}))
    result = proxy.cli(
        "-j", "backend", "remove", "--id", "ghost", "--backend-id", "b", "-a", "127.0.0.1:1"
    )
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["status"] == "FAILURE" and answer["message"]
    assert answer["message"] in result.stderr


def test_main_unreachable_is_json(pysozu: Any) -> None:
    config, _socket = pysozu.write_config(pysozu.http_config(pysozu.free_port(), {}))
    result = pysozu_cli(pysozu, config, "-j", "status")
    assert result.returncode == 3
    answer = json.loads(result.stdout)
    assert answer == {"status": "FAILURE", "message": answer["message"], "content": None}
    assert "no command socket" in answer["message"]


def test_a_usage_error_is_json(pysozu: Any) -> None:
    config, _socket = pysozu.write_config(pysozu.http_config(pysozu.free_port(), {}))
    result = pysozu_cli(pysozu, config, "cluster", "add", "--json")
    assert result.returncode == 2
    answer = json.loads(result.stdout)
    assert answer["status"] == "FAILURE" and "--id" in answer["message"]


def pysozu_cli(pysozu: Any, config: Any, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "dataplane", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
