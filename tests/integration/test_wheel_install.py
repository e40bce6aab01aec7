"""pysozu's release files as a user gets them (`scripts/build-wheels`): the sdist, the pure wheel
and the compiled wheel, each wheel installed by pip into a fresh virtual environment with its
dependencies (from the package registries pip is set up with), then run from there: its modules
come from that environment (C extensions or Python source), its worker says which build it runs,
and its `pysozu start` proxies a request to a loopback backend. Also: pip picks the compiled
wheel where both are offered, and a compiling build without a C compiler stops, saying so.
(The build takes about 2.5 minutes here, mypyc's; each install 10-30 s.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
KINDS = {"pure": "-py3-none-any.whl", "compiled": f"-cp3{sys.version_info.minor}-"}


def clean_env(**extra: str) -> dict[str, str]:
    """Nothing of the test's own environment decides what a fresh venv imports."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("PYSOZU_COMPILE", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [str(REPO / "scripts" / "build-wheels"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr[-6000:]
    built = [Path(line) for line in result.stdout.split()]
    assert sorted(path.parent for path in built) == [out] * 3
    files = {"sdist": next(p for p in built if p.name.endswith(".tar.gz"))}
    for kind, mark in KINDS.items():
        (files[kind],) = [p for p in built if mark in p.name]
    assert re.fullmatch(r"pysozu-[\d.]+-cp3\d+-cp3\d+-linux_\w+\.whl", files["compiled"].name)
    assert "[3/3]" in result.stderr  # progress lines
    return files


def pip(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=clean_env())


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_pip_prefers_the_compiled_wheel_where_both_are_offered(wheels: dict[str, Path]) -> None:
    result = pip(
        "install", "--dry-run", "--ignore-installed", "--no-deps", "--no-index", "--quiet",
        "--find-links", str(wheels["pure"].parent), "--report", "-", "pysozu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (chosen,) = json.loads(result.stdout)["install"]
    assert chosen["download_info"]["url"].endswith(wheels["compiled"].name)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_wheel_installed_in_a_fresh_venv_runs_its_own_build(
    kind: str, wheels: dict[str, Path], tmp_path: Path, pysozu: Any, backends: Any
) -> None:
    venv = tmp_path / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=60, env=clean_env()
    )
    assert made.returncode == 0
    python = venv / "bin" / "python"
    # .venv's pip installs into it (pip --python): the wheel, and its dependencies from the
    # registries pip is set up with.
    installed = pip("--python", str(python), "install", "--quiet", str(wheels[kind]))
    assert installed.returncode == 0, installed.stderr[-4000:]

    check = (
        "import dataplane.proxy.mux.session as s, dataplane.build_info as b\n"
        "print(s.__file__); print(b.describe())"
    )
    result = subprocess.run(
        [str(python), "-c", check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    module_file, described = result.stdout.splitlines()
    assert module_file.startswith(str(venv / "lib"))
    if kind == "compiled":
        assert module_file.endswith(".so")
        assert described.startswith("compiled: ")
        assert "session" in described.removeprefix("compiled: ").split(", ")
    else:
        assert module_file.endswith("/dataplane/proxy/mux/session.py")
        assert described == "pure Python"

    listen = pysozu.free_port()
    toml = "worker_count = 1\n" + pysozu.http_config(
        listen, {"app": ("app.com", [backends.start("app-1")])}
    )
    config_path, _ = pysozu.write_config(toml)
    log_path = config_path.parent / "pysozu.log"
    with open(log_path, "wb") as log:
        proxy = subprocess.Popen(
            [str(venv / "bin" / "pysozu"), "start", "-c", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=config_path.parent,
            env=clean_env(),
            start_new_session=True,  # its workers too: stopped as one group below
        )
    try:
        deadline = time.monotonic() + 30
        answer: tuple[int, bytes] | None = None
        while answer is None and time.monotonic() < deadline:
            assert proxy.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(OSError):
                answer = pysozu.http_get(listen, "app.com", f"/{kind}", timeout=5.0)
            time.sleep(0.1)
        assert answer == (200, b"app-1"), log_path.read_text(errors="replace")
        status = subprocess.run(
            [str(venv / "bin" / "pysozu"), "-c", str(config_path), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=config_path.parent,
            env=clean_env(),
        )
        assert status.returncode == 0 and '"RUNNING"' in status.stdout, status.stdout
        running = re.findall(r"worker \d+ running \(pid \d+, ([^)]*)\)", log_path.read_text())
        assert len(running) == 1, log_path.read_text()
        if kind == "compiled":
            names = running[0].removeprefix("compiled: ").split(", ")
            assert {"session", "head", "router", "loop"} <= set(names), running[0]
        else:
            assert running[0] == "pure Python"
    finally:
        stop_group(proxy)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to main (a soft stop), then SIGKILL to whatever of its group is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.timeout(120)
def test_a_compiling_build_without_a_compiler_says_so(tmp_path: Path) -> None:
    """scripts/build-wheels and setup.py (PYSOZU_COMPILE=1), with $CC not there: no pure
    build passed off as compiled, and no traceback from deep inside the build."""
    env = clean_env(CC=str(tmp_path / "no-such-cc"))
    result = subprocess.run(
        [str(REPO / "scripts" / "build-wheels"), "--out", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0
    assert "cannot build the compiled wheel: no C compiler: " in result.stderr
    assert "no-such-cc" in result.stderr and "--pure" in result.stderr
    assert not (tmp_path / "dist").exists()

    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "build_backend.py", "pyproject.toml"):
        shutil.copy2(REPO / name, source / name)
    result = subprocess.run(
        [sys.executable, "setup.py", "--name"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYSOZU_COMPILE": "1"},
    )
    assert result.returncode != 0
    assert "PYSOZU_COMPILE=1: no C compiler: " in result.stderr
    assert "Traceback" not in result.stderr
    # As a user's `PYSOZU_COMPILE=1 pip install .` meets it: pip's isolated build stops at
    # build_backend's first hook, before mypy is fetched, and pip shows why.
    (source / "MANIFEST.in").touch()
    (source / "README.md").write_text("pysozu\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "w"),
         str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYSOZU_COMPILE": "1"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "PYSOZU_COMPILE=1: no C compiler: " in result.stdout + result.stderr
    assert "mypy" not in re.findall(r"Collecting (\S+)", result.stdout)
    assert not list((tmp_path / "w").glob("*.whl"))
