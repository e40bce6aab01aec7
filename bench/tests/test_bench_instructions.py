"""`bench/instructions` runs pysozu under callgrind in its three cases and writes its table.
(Few requests: the figures of a short run are not the ones to quote, but their order is.)"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "instructions"


def run_script(results: Path, timeout: int, *args: str) -> subprocess.CompletedProcess[str]:
    """bench/instructions with `args`, its results in `results`."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--results-dir", str(results)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="needs valgrind (scripts/test installs it)"
)
def test_counts_instructions_per_request_in_each_case(tmp_path: Path) -> None:
    done = run_script(tmp_path, 850, "--requests", "200")
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
    done = run_script(tmp_path, 550, "--compare", "h2", "--requests", "200", "--connections", "1")
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
    done = run_script(tmp_path, 1150, "--compare", "https", "--requests", "200")
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


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(
    shutil.which("valgrind") is None
    or shutil.which("openssl") is None
    or shutil.which("nginx", path="/usr/sbin:/usr/bin") is None,
    reason="needs valgrind, the openssl CLI and nginx",
)
def test_counts_resumed_and_full_handshakes_beside_nginx(tmp_path: Path) -> None:
    done = run_script(
        tmp_path, 1450, "--compare", "handshakes", "--requests", "40", "--connections", "2"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = r"^\| HTTPS Connection: close GET, (resumed|full)[^|]* \| ([\d,]+) \| ([\d,]+) \|"
    rows = re.findall(row, done.stdout, re.M)
    assert [kind for kind, _, _ in rows] == ["resumed", "full"]
    for _, ours, theirs in rows:  # a handshake each: millions of instructions, on both sides
        assert int(ours.replace(",", "")) > 1_000_000 and int(theirs.replace(",", "")) > 1_000_000


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


def test_handshake_cases_pair_each_pysozu_case_with_nginx_resumed_then_full() -> None:
    cases = load_script().CASES["handshakes"]  # type: ignore[attr-defined]
    assert [c.nginx for c in cases] == [False, True, False, True]
    assert all(c.tls and c.close for c in cases)
    assert [c.resume for c in cases] == [True, True, False, False]
    assert [c.tickets for c in cases[2:]] == [0, 0]  # full: no ticket at all, either side


def _tls_server(directory: Path, tickets: int) -> tuple[object, int]:
    """An HTTP/1.0 server over TLS 1.3 on 127.0.0.1 in a thread (answers `GET /` with 200),
    sending `tickets` session tickets per handshake."""
    import http.server
    import ssl
    import threading

    sys.path.insert(0, str(SCRIPT.parent))
    from harness.tls import self_signed

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    files = self_signed("openssl", directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.certificate, files.key)
    context.num_tickets = tickets

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.timeout(60)
def test_resuming_clients_resume_every_handshake_after_the_first(tmp_path: Path) -> None:
    """--compare handshakes: each connection offers the latest session and must resume it."""
    script = load_script()
    server, port = _tls_server(tmp_path, tickets=2)
    try:
        resumption = script.Resumption()  # type: ignore[attr-defined]
        script.get(port, 6, 2, True, True, 0, None, resumption)  # type: ignore[attr-defined]
        assert resumption.session is not None and resumption.session.has_ticket
        script.get(port, 10, 2, True, True, 0, None, resumption)  # type: ignore[attr-defined]
    finally:
        server.shutdown()  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_resuming_clients_fail_when_the_server_resumes_nothing(tmp_path: Path) -> None:
    """A server sending no ticket (send_tls13_tickets = 0) leaves nothing to resume: the
    resumed case refuses to count full handshakes as resumed ones."""
    script = load_script()
    server, port = _tls_server(tmp_path, tickets=0)
    try:
        resumption = script.Resumption()  # type: ignore[attr-defined]
        script.get(port, 4, 1, True, True, 0, None, resumption)  # type: ignore[attr-defined]
        assert resumption.session is not None and not resumption.session.has_ticket
        with pytest.raises(RuntimeError, match="did not resume"):
            script.get(port, 4, 1, True, True, 0, None, resumption)  # type: ignore[attr-defined]
    finally:
        server.shutdown()  # type: ignore[attr-defined]
