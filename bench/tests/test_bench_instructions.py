"""`bench/instructions` runs pysozu under callgrind in its three cases and writes its table.
(Few requests: the figures of a short run are not the ones to quote, but their order is.)"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "instructions"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="needs valgrind (scripts/test installs it)"
)
def test_counts_instructions_per_request_in_each_case(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--requests", "200", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(r"^\| (access logs and metrics [^|]+) \| ([\d,]+) \|", done.stdout, re.M)
    figures = {name: int(value.replace(",", "")) for name, value in rows}
    off = figures["access logs and metrics off"]
    pure = figures["access logs and metrics on, pure Python"]
    compiled = figures["access logs and metrics on, compiled"]
    # The work shows; compiled is less (the whole request path is, so it may fall below off).
    assert 10_000 < off < pure and 10_000 < compiled < pure
    (written,) = tmp_path.glob("*-instructions.md")
    assert "callgrind" in written.read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("h2load") is None,
    reason="needs valgrind and h2load (scripts/test installs valgrind; nghttp2-client)",
)
def test_counts_instructions_per_http2_request(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--compare", "h2", "--requests", "200",
         "--connections", "1", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=550,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = re.findall(r"^\| HTTP/2 GET \(h2c\), pure Python \| ([\d,]+) \|", done.stdout, re.M)
    assert int(row.replace(",", "")) > 10_000


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("openssl") is None,
    reason="needs valgrind and the openssl CLI (scripts/test installs valgrind)",
)
def test_counts_instructions_per_https_request_and_openssls_share(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--compare", "https", "--requests", "200",
         "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(
        r"^\| ((?:HTTPS )?keep-alive GET, [^|]+) \| ([\d,]+) \|(.*)$", done.stdout, re.M
    )
    figures = {name: (int(value.replace(",", "")), rest) for name, value, rest in rows}
    for build in ("pure Python", "compiled"):
        plain, _ = figures[f"keep-alive GET, {build}"]
        tls, columns = figures[f"HTTPS keep-alive GET, {build}"]
        openssl = int(columns.split("|")[2].strip().replace(",", ""))
        assert 10_000 < plain < tls and 1_000 < openssl < tls  # TLS costs, OpenSSL its share
