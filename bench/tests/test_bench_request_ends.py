"""`bench/request_ends` runs and prints a figure per part."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "request_ends"


@pytest.mark.timeout(60)
def test_prints_microseconds_per_request_for_each_part():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", "64", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    figures = re.findall(r"^(.+?)\s+(\d+\.\d{3}) µs per request$", done.stdout, re.MULTILINE)
    assert [name for name, _ in figures] == [
        "metrics (count_requests)",
        "access log (AsciiFormatter.lines)",
    ]
    assert all(float(value) > 0 for _, value in figures)
