"""A worker that does not answer is named, and does not hold main up."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


def test_a_silent_worker_is_named_and_main_keeps_serving(pysozu: Any) -> None:
    port = pysozu.free_port()
    proxy = pysozu.start(
        "worker_timeout = 1\n" + f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n'
    )
    frozen = proxy.workers()[0]
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        result = proxy.cli("-t", "10000", "cluster", "add", "-i", "late")
        assert result.returncode == 1
        assert f"worker {frozen.id}: no answer within 1 s" in result.stderr
        status = proxy.cli("-t", "10000", "-j", "status")
        states = {
            w["pid"]: w["run_state"]
            for w in json.loads(status.stdout)["content"]["content_type"]["WORKERS"]["vec"]
        }
        assert states[frozen.pid] == "NOT_ANSWERING"
        assert sorted(states.values()) == ["NOT_ANSWERING", "RUNNING"]
        # main answered its other clients all along, and its state took the change
        listed = proxy.cli("-t", "10000", "-j", "cluster", "list")
        main_view = json.loads(listed.stdout)["content"]["content_type"]["WORKER_RESPONSES"]
        assert "late" in main_view["map"]["main"]["content_type"]["CLUSTER_HASHES"]["map"]
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    proxy.wait_ready(workers=2)
