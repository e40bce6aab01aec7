import pytest
from harness import cli, scenarios, tools
from harness.procs import last_lines
from harness.runner import Options


def options(fd_limit: int) -> Options:
    return Options(
        runs=3,
        duration_s=10,
        connections=50,
        proxy_cpus="0",
        load_cpus="1",
        reconfig_changes=100,
        fd_limit=fd_limit,
    )


def test_idle_connections_fit_the_open_file_limit():
    idle = scenarios.BY_NAME["idle-10k"]
    assert options(65_536).capacity(idle) == 20_000
    assert options(65_536).idle_count(idle) == 10_000
    # Proxies need about two descriptors per connection: 20,000 files hold 9,900 connections.
    assert options(20_000).capacity(idle) == 9_900
    assert options(20_000).idle_count(idle) == 9_800
    assert options(20_000).idle_count(scenarios.BY_NAME["keepalive-13b"]) == 0


def test_quick_mode_is_seconds_not_minutes():
    args = cli.parse_args(["--quick"])
    assert (args.runs, args.duration, args.scenarios, args.reconfig_changes) == (
        1,
        1.0,
        "quick",
        10,
    )
    args = cli.parse_args([])
    assert (args.runs, args.duration, args.scenarios, args.reconfig_changes) == (
        3,
        10.0,
        "all",
        100,
    )
    assert cli.parse_args(["--quick", "--runs", "2"]).runs == 2


def test_cpu_lists_are_read_like_taskset():
    assert cli._cpu_set("1") == {1}
    assert cli._cpu_set("0-2,5") == {0, 1, 2, 5}


def test_failure_reasons_keep_the_last_lines():
    traceback = "Traceback (most recent call last):\n  File x\n\n    y()\nValueError: bad port\n"
    assert last_lines(traceback, lines=2) == "y() | ValueError: bad port"
    assert len(last_lines("x" * 1000)) == 400


@pytest.mark.timeout(600)
def test_the_default_build_runs_pysozu_compiled():
    """`--build compiled` (the default): scripts/build-compiled's launcher, whose worker modules
    are the compiled ones, as the results file then says."""
    assert cli.parse_args([]).build == "compiled"
    pysozu = cli.find_pysozu(None, "compiled")
    assert pysozu is not None and pysozu.endswith("/bin/pysozu") and "build/compiled" in pysozu
    version = tools.pysozu_version(pysozu)
    assert "compiled: " in version and all(
        f" {name}," in version for name in ("access_log_format", "session", "router")
    )
    pure = cli.find_pysozu(None, "pure")
    assert pure == str(cli.REPO / ".venv" / "bin" / "pysozu")
    assert tools.pysozu_version(pure).endswith(", pure Python")
