"""The benchmark's relay scenarios (`--scenarios layer4`) run end to end in --quick mode: TCP
through nginx stream, HAProxy `mode tcp` and pysozu, UDP through nginx stream and pysozu, each
measured (no figure asserted: the test machine is no benchmark machine).

Like test_bench_smoke.py it installs nothing; scripts/test installs wrk, nginx-light,
libnginx-mod-stream and haproxy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_bench_smoke import BENCH, PYSOZU, harness_env, pytestmark, scratch  # noqa: F401

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


@pytest.mark.timeout(300)
def test_quick_relay_scenarios_measure_every_proxy_that_relays(
    tmp_path: Path,
    scratch: Path,  # noqa: F811
) -> None:
    if not STREAM_MODULE.exists():
        pytest.fail(f"{STREAM_MODULE} missing: apt-get install libnginx-mod-stream")
    argv = [sys.executable, str(BENCH), "--quick", "--no-install", "--scenarios", "layer4"]
    argv += ["--targets", "nginx,haproxy,pysozu,direct", "--results-dir", str(tmp_path)]
    argv += ["--pysozu", str(PYSOZU)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
        env=harness_env(scratch),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [written] = tmp_path.glob("*-quick-layer4.md")
    text = written.read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    tables = {part.split(":", 1)[0]: part for part in sections[1:]}
    for scenario, measured in (
        ("tcp-100k", ("nginx", "haproxy", "pysozu", "direct")),
        ("tcp-bulk-100m", ("nginx", "haproxy", "pysozu", "direct")),
        ("udp", ("nginx", "pysozu", "direct")),
    ):
        table = tables[scenario]
        for target in measured:
            assert re.search(rf"^\| {target} \| [0-9,]+ \|", table, re.M), table
        assert "Per second of proxy CPU (median runs): " in table
    assert "| haproxy | skipped: HAProxy (community edition) does not relay UDP |" in tables["udp"]
    assert "MiB/s" in tables["tcp-bulk-100m"]
    assert "Rate against the load generator straight to the backend" in tables["udp"]
