"""pysozu built as the Docker image is, its request path, metrics and access log compiled by
mypyc (`scripts/build-compiled`, setup.py): the same behaviour as the Python source, checked by
the same tests, and a real proxy that runs it. (`scripts/test-compiled` runs any others.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from compiled_selection import REPO as SELECTION_REPO
from compiled_selection import compiled_paths, unit_tests_of_compiled_modules

REPO = Path(__file__).resolve().parents[2]
COMPILED = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pysozu"]["compile"]
MODULES = [path.removesuffix(".py").replace("/", ".") for path in COMPILED]
# The unit test files that import a compiled module, directly or through other modules
# (tests/support/compiled_selection.py reads the imports): the others import nothing that is
# compiled, and would run the same Python code again.
UNIT_TESTS = unit_tests_of_compiled_modules()
# The tests of the compiled modules, run again against the compiled build: those unit test
# files, and integration tests of HTTP/1.1 (and over TLS), the access logs and the metrics
# (about 2 minutes here; `scripts/test-compiled tests/...` runs any others as well).
SAME_TESTS = [
    *(str(path.relative_to(REPO)) for path in UNIT_TESTS),
    "tests/integration/test_http_protocol.py",
    "tests/integration/test_http_headers.py",
    "tests/integration/test_https_sni.py",
    "tests/integration/test_proxy_protocol.py",  # a PROXY header's destination, compiled
    "tests/integration/test_observability_access_logs.py",
    "tests/integration/test_observability_metrics.py",
    "tests/integration/test_protobuf_access_logs.py",
    "tests/integration/test_prometheus_http.py",
]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_unit_tests_run_compiled_cover_every_compiled_module() -> None:
    """The selection is not empty, reaches each module of the compile list, and leaves out
    only files that reach none (so a new compiled module's tests are picked up by their
    imports). Its known cases: a test importing a compiled module directly, one reaching
    one through the command side (state.py validates rules with the compiled rules.py),
    and one of main's code alone."""
    assert SELECTION_REPO == REPO
    assert compiled_paths() == COMPILED
    assert UNIT_TESTS, "no unit test file reaches a compiled module"
    reached = set().union(*UNIT_TESTS.values())
    assert reached == set(COMPILED), f"no unit test reaches {sorted(set(COMPILED) - reached)}"
    unit = REPO / "tests" / "unit"
    assert "dataplane/proxy/routing/router.py" in UNIT_TESTS[unit / "test_router.py"]
    assert "dataplane/proxy/routing/rules.py" in UNIT_TESTS[unit / "test_state_properties.py"]
    assert unit / "test_main_tasks.py" not in UNIT_TESTS
    assert all(path.is_file() for path in UNIT_TESTS)


@pytest.fixture(scope="module")
def compiled_site() -> Path:
    """The build's directory: put first on PYTHONPATH, it holds the whole package."""
    result = subprocess.run(
        [str(REPO / "scripts" / "build-compiled")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    site = Path(result.stdout.strip())
    for path in COMPILED:
        assert list(site.glob(path.removesuffix(".py") + ".*.so")), f"{path} was not compiled"
    return site


def compiled_env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


def test_python_finds_the_compiled_modules(compiled_site: Path) -> None:
    # -P: the checkout's own dataplane/ (the working directory) must not come first.
    check = (
        f"import {', '.join(MODULES)}, sys; print(*(sys.modules[m].__file__ for m in {MODULES!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-c", check],
        env=compiled_env(compiled_site),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    files = result.stdout.split()
    assert len(files) == len(MODULES)
    assert all(file.startswith(str(compiled_site)) and file.endswith(".so") for file in files)


def test_the_modules_tests_pass_compiled(compiled_site: Path) -> None:
    """The unit tests of the compiled modules, and integration tests whose pysozu processes
    (started in temporary directories) import the same build. Skipped: only the unit tests
    that call a compiled method with a stand-in `self` (tests/unit/test_access_log_worker.py
    says so)."""
    result = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-p", "no:cacheprovider", "-q", *SAME_TESTS],
        env=compiled_env(compiled_site),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)
    assert " failed" not in result.stdout
    skipped = re.findall(r"^SKIPPED \[\d+\] ([^:]+)", result.stdout, re.M)
    assert set(skipped) <= {"tests/unit/test_access_log_worker.py"}, skipped


def test_a_proxy_started_in_the_checkout_runs_its_workers_compiled(
    pysozu: Any, backends: Any, tmp_path: Path, compiled_site: Path
) -> None:
    """As `$(scripts/build-compiled)/bin/pysozu start` from the checkout's root: main runs
    without the working directory on its path (-P, with the build on PYTHONPATH), and so must
    its workers, or they would import the checkout's pure-Python modules."""
    listen = pysozu.free_port()
    log_path = tmp_path / "access.log"
    toml = f'access_logs_target = "file://{log_path}"\n' + pysozu.http_config(
        listen, {"app": ("app.com", [backends.start("app-1")])}
    )
    config_path, socket_path = pysozu.write_config(toml)
    proxy = pysozu.start_file(
        config_path,
        socket_path,
        python_flags=["-P"],
        env=compiled_env(compiled_site),
        cwd=REPO,
    )
    for n in range(20):
        status, _ = pysozu.http_get(listen, "app.com", f"/compiled/{n}")
        assert status == 200
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while len(lines) < 20 and time.monotonic() < deadline:
        lines = log_path.read_text(encoding="utf-8").splitlines() if log_path.exists() else []
        time.sleep(0.05)
    assert sorted(line.split()[-2] for line in lines) == sorted(f"/compiled/{n}" for n in range(20))
    assert all(" INFO-ACCESS " in line and line.endswith(" 200") for line in lines)
    running = re.findall(r"worker \d+ running \(pid \d+, ([^)]*)\)", proxy.log())
    assert len(running) == 2, proxy.log()
    for described in running:
        names = described.removeprefix("compiled: ").split(", ")
        for name in ("access_log_format", "metrics", "session", "head", "router", "loop"):
            assert name in names, described
    metrics = proxy.cli("metrics", "get", "--json")
    assert metrics.returncode == 0, metrics.stderr
    assert '"app"' in metrics.stdout
