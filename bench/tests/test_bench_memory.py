"""`bench/memory`: main's and the workers' resident memory after start and after a load run."""

import importlib.machinery
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "memory"


def load_script():
    loader = importlib.machinery.SourceFileLoader("bench_memory", str(SCRIPT))
    spec = importlib.util.spec_from_loader("bench_memory", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_smaps_rollup_gives_rss_pss_and_uss_in_bytes():
    text = (
        "55d0c0000000-7ffd8e5fe000 ---p 00000000 00:00 0    [rollup]\n"
        "Rss:               24000 kB\nPss:               16000 kB\n"
        "Shared_Clean:       8000 kB\nPrivate_Clean:      1000 kB\n"
        "Private_Dirty:     14000 kB\nSwap:                  0 kB\n"
    )
    assert load_script().smaps_rollup(text) == {
        "rss": 24000 * 1024,
        "pss": 16000 * 1024,
        "uss": 15000 * 1024,
    }


def test_the_default_configuration_moves_to_the_ports_given():
    memory = load_script()
    moved = memory.config_on_ports(memory.DEFAULT_CONFIG.read_text(), 9000, [9001, 9002])
    assert "127.0.0.1:9000" in moved and "127.0.0.1:9001" in moved and "127.0.0.1:9002" in moved
    assert not re.search(r"127\.0\.0\.1:(8080|18081|18082)\b", moved)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_measures_main_and_two_workers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--build", "pure", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(r"^\| (pysozu [^|]+) \| ([\d.]+) MB \| ([\d.]+) MB \|", done.stdout, re.M)
    assert [name.strip() for name, _, _ in rows] == [
        "pysozu main",
        "pysozu worker 0",
        "pysozu worker 1",
    ]
    for _, idle, after in rows:
        assert 5 < float(idle) < 500 and 5 < float(after) < 500
