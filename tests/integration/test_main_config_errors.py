"""A configuration that cannot be used: every problem reported with its place, exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

BAD = """\
worker_count = "two"
[[listeners]]
protocol = "htttp"
address = "127.0.0.1:1"
"""


def pysozu(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataplane", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
    )


@pytest.mark.parametrize("verb", [["start"], ["config", "check"]])
def test_missing_file(tmp_path: Path, verb: list[str]) -> None:
    missing = tmp_path / "nope.toml"
    result = pysozu(*verb, "-c", str(missing), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{missing}: cannot read: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("verb", [["start"], ["config", "check"]])
def test_every_problem_is_located(tmp_path: Path, verb: list[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(BAD)
    result = pysozu(*verb, "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"pysozu: {config}: worker_count: expected an integer, got the string 'two'" in lines
    assert any(
        line.startswith(f"pysozu: {config}: [listeners.0] protocol: unknown protocol 'htttp'")
        for line in lines
    ), result.stderr
    assert not (tmp_path / "sozu.sock").exists()  # nothing was started


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "good.toml"
    config.write_text('[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:8080"\n')
    result = pysozu("config", "check", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout


def test_cli_without_a_running_proxy_says_so(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'command_socket = "{tmp_path}/nobody.sock"\n')
    result = pysozu("-c", str(config), "status", cwd=tmp_path)
    assert result.returncode == 3
    assert "is pysozu running" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("verb", [["start"], ["config", "check"]])
def test_an_unknown_top_level_key_is_an_error_as_a_nested_one(
    tmp_path: Path, verb: list[str]
) -> None:
    config = tmp_path / "typo.toml"
    config.write_text(
        f'command_socket = "{tmp_path}/s.sock"\nworker_cout = 4\n'
        '[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:1"\n'
    )
    result = pysozu(*verb, "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        f"pysozu: {config}: worker_cout: unknown key (did you mean worker_count?)"
        in result.stderr.splitlines()
    )
    assert "configuration is valid" not in result.stdout
    assert not (tmp_path / "s.sock").exists()  # main never started
