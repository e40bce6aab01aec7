"""Every fuzz target (fuzz/targets/) runs under atheris for its bounded time in the suite.

Bounds: fuzz/fuzzer.py's CI_TIME seconds or CI_RUNS inputs per target, whichever comes first,
and 10 s for any one input (longer is a hang). A target that finds something fails with the
input in the message; fuzz/README.md says how to replay it and turn it into a unit test.
Long runs: `fuzz/run --time 3600 --runs 0 TARGET`. The suite's runs use a fixed seed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_support import FUZZER_PATH, REPO, TARGETS, fuzzer

pytestmark = pytest.mark.fuzz
SEED = 20261206


def test_every_target_is_found() -> None:
    assert {
        "http_request",
        "http_response",
        "http_chunked",
        "request_path",
        "command_channel",
        "config_toml",
        "state_file",
        "proxy_header",
        "client_hello",
    } <= set(TARGETS)


@pytest.mark.timeout(fuzzer.CI_TIME + 120)
@pytest.mark.parametrize("target", TARGETS)
def test_target_finds_nothing_in_its_bounded_run(target: str, tmp_path: Path) -> None:
    # A fixed seed: the same inputs on every run of the suite (up to the time bound), so a CI
    # failure is one anybody can reproduce; long runs (fuzz/run) explore with random seeds.
    command = [
        sys.executable, "-P", str(FUZZER_PATH), target, "--work", str(tmp_path),
        "--", f"-seed={SEED}",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=fuzzer.CI_TIME + 100
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"fuzz target {target} found a problem:\n{output[-6000:]}"
    assert "Done " in output, output[-3000:]  # libFuzzer ran and stopped at its bound
