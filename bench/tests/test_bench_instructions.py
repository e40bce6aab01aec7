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


def load_script() -> object:
    """bench/instructions as a module (it has no .py suffix)."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("bench_instructions", str(SCRIPT))
    spec = importlib.util.spec_from_loader("bench_instructions", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_instructions"] = module  # its dataclasses look their module up
    loader.exec_module(module)
    return module


def test_cache_sim_reads_the_data_misses_and_simulates_the_cores_l2(tmp_path: Path) -> None:
    """--cache-sim: a dump's summary read by its events line (first-level data misses, read and
    write, then last-level), and valgrind's last level set to this core's L2 from sysfs."""
    script = load_script()
    dump = tmp_path / "case0.1"
    dump.write_text(
        "version: 1\nevents: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim\n"
        "fn=(1) main\n1 10 4 2 1 3 1 0 5 2 6 1 2 1\n"
        "summary: 1000 400 200 10 30 12 4 7 2 60 5 20 3\n"
    )
    assert script.callgrind_cache_misses(dump) == (42, 9, 10, 8)  # type: ignore[attr-defined]
    (option,) = script.core_last_level() or ["--LL=0,0,0"]  # type: ignore[attr-defined]
    size, ways, line = map(int, option.removeprefix("--LL=").split(","))
    if Path("/sys/devices/system/cpu/cpu0/cache/index2").exists():
        assert size >= 64 * 1024 and ways >= 1 and line in (32, 64, 128)
        assert (size // (ways * line)) & (size // (ways * line) - 1) == 0  # sets: a power of 2


def test_nginx_table_sets_each_pysozu_case_beside_nginx_with_openssl_apart() -> None:
    """--compare nginx: each pysozu case with the nginx case after it, OpenSSL's part and the
    rest (each proxy's own work) apart, for TLS cases only."""
    script = load_script()
    case = script.Case  # type: ignore[attr-defined]
    plain = case("Connection: close GET, pysozu compiled", False, True, True, close=True)
    plain_nginx = case("Connection: close GET, nginx", False, False, False, close=True, nginx=True)
    tls = case(
        "HTTPS Connection: close GET, pysozu compiled, 2 tickets", False, True, True, tls=True
    )
    tls_nginx = case(
        "HTTPS Connection: close GET, nginx", False, False, False, tls=True, nginx=True
    )
    text = script.table(  # type: ignore[attr-defined]
        [(plain, 60_000, 0), (plain_nginx, 20_000, 0), (tls, 3_000_000, 2_800_000),
         (tls_nginx, 2_820_000, 2_795_000)]
    )  # fmt: skip
    lines = text.splitlines()
    assert lines[2] == "| Connection: close GET | 60,000 | 20,000 | 3.00x |  | 60,000 / 20,000 |"
    assert lines[3] == (
        "| HTTPS Connection: close GET, 2 tickets | 3,000,000 | 2,820,000 | 1.06x "
        "| 2,800,000 / 2,795,000 | 200,000 / 25,000 |"
    )
    assert all(c.nginx == ("nginx" in c.name) for c in script.CASES["nginx"])  # type: ignore[attr-defined]
