"""Process titles: `ps` shows `pysozu main` and `pysozu worker N`, not the interpreter's line."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


def cmdline(pid: int) -> str:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return raw.replace(b"\0", b" ").decode().strip()


def test_main_and_workers_are_named_in_ps(pysozu: Any) -> None:
    port = pysozu.free_port()
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [pysozu.free_port()])}))
    assert cmdline(proxy.process.pid) == "pysozu main"
    workers = {info.id: info.pid for info in proxy.workers()}
    assert len(workers) == 2
    for worker_id, pid in workers.items():
        assert cmdline(pid) == f"pysozu worker {worker_id}"
    listed = subprocess.run(
        [
            "ps",
            "-o",
            "args=",
            "-p",
            ",".join(str(p) for p in [proxy.process.pid, *workers.values()]),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert sorted(line.strip() for line in listed if line.strip()) == sorted(
        ["pysozu main", *(f"pysozu worker {w}" for w in workers)]
    )
