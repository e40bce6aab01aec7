"""The gRPC scenarios and the nghttpx peer: configurations, grpcload's report and command line,
the default targets, and one short end-to-end run of bench/run (direct, pysozu and nghttpx on
grpc-h2c and http2: every row measured, none skipped)."""

import re
import shutil
import sys
from pathlib import Path

import pytest
from harness import cli, configs, grpcload, loadgen, scenarios
from harness.errors import ParseError

from dataplane.command.config import parse_config

TLS = configs.TlsFiles(Path("/x/cert.pem"), Path("/x/key.pem"), Path("/x/both.pem"))
REPO = Path(__file__).resolve().parents[2]


def setup(**overrides) -> configs.ProxySetup:
    return configs.ProxySetup(
        workdir=Path("/run/bench"), listen_port=8080, backend_port=9090, **overrides
    )


def test_pysozu_grpc_config_speaks_h2c_to_the_backend():
    config = parse_config(configs.pysozu_proxy(setup(http2=True, grpc=True)))
    assert not config.warnings
    [listener] = config.listeners
    assert (listener.address.port, listener.h2c) == (8080, True)  # h2 with prior knowledge
    [cluster] = config.clusters.values()
    assert cluster.cluster.http2 is True
    tls = configs.pysozu_proxy(setup(tls=TLS, http2=True, grpc=True))
    assert "http2 = true" in tls and "h2c" not in tls  # h2 by ALPN on the TLS listener


def test_nghttpx_config():
    text = configs.nghttpx_proxy(setup(tls=TLS, http2=True))
    assert "frontend=127.0.0.1,8080\n" in text
    assert "backend=127.0.0.1,9090;;proto=http/1.1\n" in text
    assert "private-key-file=/x/key.pem" in text and "certificate-file=/x/cert.pem" in text
    assert "workers=1" in text and "accesslog-file" not in text
    grpc = configs.nghttpx_proxy(setup(grpc=True))
    assert "frontend=127.0.0.1,8080;no-tls\n" in grpc and ";;proto=h2\n" in grpc
    with pytest.raises(ValueError):
        configs.nghttpx_proxy(setup(clusters=2))


def test_grpcload_summary_becomes_a_load_result():
    summary = '{"calls": 300, "seconds": 2.0, "errors": 1, "p50_ms": 1.5, "p99_ms": 9.0}'
    text = f"noise\ngrpcload: {summary}\n"
    load = loadgen.parse_grpcload(text)
    assert (load.requests, load.requests_per_s, load.errors) == (300, 150.0, 1)
    assert (load.p50_ms, load.p99_ms) == (1.5, 9.0)
    with pytest.raises(ParseError):
        loadgen.parse_grpcload("Traceback: no grpc")


def test_grpcload_command_line():
    argv = grpcload.client_command(
        "/py", "127.0.0.1:1", duration_s=2, concurrency=50, ca=Path("/x/cert.pem")
    )
    assert argv[:4] == ["/py", grpcload.__file__, "client", "127.0.0.1:1"]
    assert {"--duration=2", "--concurrency=50", "--tls=/x/cert.pem", "--calls=0"} <= set(argv)
    assert grpcload.server_command("/py", 7)[2:] == ["server", "7"]
    assert grpcload.has_grpc(sys.executable) is True  # the test environment has grpcio
    assert grpcload.has_grpc("/nonexistent/python") is False


def test_nghttpx_joins_the_default_targets_for_http2_and_grpc_only():
    assert cli.parse_args(["--scenarios", "grpc"]).targets.endswith(",nghttpx")
    assert cli.parse_args(["--scenarios", "h2"]).targets.endswith(",nghttpx")
    assert "nghttpx" not in cli.parse_args(["--scenarios", "core"]).targets
    assert cli.parse_args(["--targets", "pysozu"]).targets == "pysozu"
    assert [s.name for s in scenarios.select(["grpc"])] == ["grpc"]  # a scenario, not a set
    assert [s.name for s in scenarios.select(["h2"])][2:] == ["grpc", "grpc-h2c"]


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not all(shutil.which(p, path="/usr/bin:/usr/sbin") for p in ("nghttpx", "h2load", "nginx")),
    reason="needs nghttpx, h2load and nginx (scripts/test installs them)",
)
def test_a_short_run_measures_every_row(tmp_path):
    pysozu = REPO / ".venv" / "bin" / "pysozu"
    argv = ["--scenarios", "grpc-h2c,http2", "--targets", "pysozu,nghttpx", "--runs", "1"]
    argv += ["--duration", "1", "--connections", "4", "--no-install", "--build", "pure"]
    argv += ["--pysozu", str(pysozu), "--results-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    [results] = tmp_path.glob("*.md")
    text = results.read_text()
    for scenario, targets in (
        ("grpc-h2c", ("direct", "pysozu", "nghttpx")),
        ("http2", ("pysozu", "nghttpx")),
    ):
        table = text.split(f"## {scenario}:")[1].split("\n## ")[0]
        for target in targets:
            row = re.search(rf"^\| {target} \| ([0-9,]+) \|", table, re.M)
            assert row and int(row[1].replace(",", "")) > 0, table
        assert "skipped" not in table, table
