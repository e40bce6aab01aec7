"""Fixtures of the image tests: the image built by scripts/build-image (once per session) and
podman with the runtime shim. The image's size goes into the end-of-run summary."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from podman_tools import BUILD_SCRIPT, REPORT, Podman, unavailable_reason


@pytest.fixture(scope="session")
def image() -> str:
    """The image built from the unchanged Dockerfile (base: scripts/build-image's)."""
    if (reason := unavailable_reason()) is not None:
        message, skip = reason
        if skip:
            pytest.skip(f"IMAGE NOT TESTED: {message}")
        pytest.fail(message)
    try:
        result = subprocess.run(
            [sys.executable, str(BUILD_SCRIPT), "--quiet"],
            capture_output=True, text=True, timeout=1500, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"scripts/build-image took too long: {error}")
    assert result.returncode == 0, f"scripts/build-image failed:\n{result.stderr[-6000:]}"
    REPORT.append(result.stderr.strip().replace("build-image: ", "build: "))
    return result.stdout.strip()


@pytest.fixture
def podman(image: str, tmp_path: Path) -> Iterator[Podman]:
    """podman for one test; its containers and volumes are removed afterwards."""
    tool = Podman(tmp_path)
    try:
        yield tool
    finally:
        tool.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries its containers' logs (taken before they are removed)."""
    report = yield
    tool = getattr(item, "funcargs", {}).get("podman")
    if report.when == "call" and report.failed and isinstance(tool, Podman):
        for kind, name in tool.owned:
            if kind == "container":
                logs = tool("logs", name, check=False)
                report.sections.append((f"logs of {name}", (logs.stdout + logs.stderr)[-6000:]))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("pysozu image")
        for line in REPORT:
            terminalreporter.write_line(line)
