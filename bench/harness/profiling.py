"""Flame graphs of a pysozu worker under load, with py-spy (`bench/run --profile`)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from harness.procs import Supervisor


def py_spy_command(py_spy: str, pid: int, output: Path, duration_s: float) -> list[str]:
    """Sample without pausing the worker (--nonblocking), so the measured run is barely
    disturbed; --idle is left out so that the graph shows where the CPU time goes."""
    return [
        py_spy, "record", "--pid", str(pid), "--output", str(output), "--format", "flamegraph",
        "--rate", "250", "--duration", str(max(1, round(duration_s))), "--nonblocking",
    ]  # fmt: skip


@contextlib.contextmanager
def flame_graph(
    sup: Supervisor, py_spy: str, pid: int, output: Path, duration_s: float
) -> Iterator[None]:
    """Record while the block runs (py-spy stops by itself after duration_s)."""
    proc = sup.start("py-spy", py_spy_command(py_spy, pid, output, duration_s), cpus=None)
    try:
        yield
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    finally:
        sup.stop(proc)
    status = "written to" if output.exists() else "NOT written (see py-spy.err in the workdir):"
    print(f"  flame graph {status} {output}", flush=True)
