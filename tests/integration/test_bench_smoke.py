"""The benchmark harness runs end to end in --quick mode and writes its table (no figures are
asserted: the machine running the tests is not a benchmark machine).

The test installs nothing: without wrk, nginx or HAProxy it skips, and says how to get them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "run"
PYSOZU = Path(sys.executable).with_name("pysozu")
TOOLS = ("wrk", "nginx", "haproxy", "taskset")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool, path=SEARCH_PATH) is None for tool in TOOLS),
    reason="benchmark tools missing (the CI script installs them: "
    "apt-get install wrk nginx-light haproxy)",
)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def bench_argv(results: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(BENCH), "--quick", "--no-install",
        "--results-dir", str(results), "--pysozu", str(PYSOZU), *extra,
    ]  # fmt: skip


@pytest.fixture
def scratch():
    """A short TMPDIR of the test's own for the harness's work directories (unix socket paths
    must stay under 108 bytes), so processes and directories of other runs never count."""
    path = Path(tempfile.mkdtemp(prefix="pzb"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def harness_env(scratch: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(scratch)}


def work_directories(scratch: Path) -> set[Path]:
    return set(scratch.glob("pysozu-bench-*"))


def leftover_processes(cwd: Path, scratch: Path) -> list[str]:
    """Processes the harness started: their command line names the scratch directory (the
    proxies and the backend, configured from work directories inside it), or they run in cwd,
    where the test starts the harness (pysozu's workers, which name neither)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            in_cwd = (entry / "cwd").resolve() == cwd.resolve()
        except OSError:
            continue
        if str(scratch) in cmdline or in_cwd:
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.timeout(240)
def test_quick_run_measures_every_proxy_and_writes_a_markdown_table(tmp_path, scratch):
    before, directories = leftover_processes(tmp_path, scratch), work_directories(scratch)
    done = subprocess.run(
        bench_argv(tmp_path),
        capture_output=True,
        text=True,
        timeout=220,
        cwd=tmp_path,
        env=harness_env(scratch),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    [written] = tmp_path.glob("*-quick.md")
    text = written.read_text()
    assert "| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | RSS MB | vs nginx |" in text
    for scenario in ("keepalive-13b", "keepalive-100k"):
        assert f"## {scenario}:" in text
    for target in ("nginx", "haproxy", "pysozu"):
        # a measured row starts with a number, a skipped one with "skipped: <reason>"
        rows = re.findall(rf"^\| {target} \| ([0-9,]+) \|", text, re.M)
        assert len(rows) == 2, f"{target} was not measured in both scenarios:\n{text[:3000]}"
    for section in ("## Machine", "## Versions", "## Commands", "taskset -c 0"):
        assert section in text
    assert "| nginx |" in done.stdout  # the table is printed too
    assert leftover_processes(tmp_path, scratch) == before
    assert work_directories(scratch) == directories


@pytest.mark.timeout(120)
def test_ctrl_c_stops_every_process_the_harness_started(tmp_path, scratch):
    before, directories = leftover_processes(tmp_path, scratch), work_directories(scratch)
    proc = subprocess.Popen(
        bench_argv(tmp_path, "--duration", "30", "--targets", "pysozu,nginx"),
        # SIGINT as a terminal gives it, even when the suite runs as a background job of a
        # shell without job control (which starts it with SIGINT ignored, inherited by exec)
        preexec_fn=_default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=harness_env(scratch),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or "started:" in line:
                break
        time.sleep(1.0)  # pysozu and nginx are up, wrk runs on pysozu
        assert (
            len(leftover_processes(tmp_path, scratch)) > len(before) + 2
        )  # pysozu, a worker, nginx
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert leftover_processes(tmp_path, scratch) == before
    assert work_directories(scratch) == directories
    assert list(tmp_path.glob("*.md")) == []
