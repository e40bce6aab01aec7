"""A sozu flag pysozu takes without acting on it yet is named on stderr, and the change is still
made (the value is kept for when pysozu acts on it)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


def test_unserved_flags_are_named_on_stderr(pysozu: Any) -> None:
    listen = pysozu.free_port()
    proxy = pysozu.start(pysozu.http_config(listen, {}), workers=1)
    address = f"127.0.0.1:{listen}"
    updated = proxy.cli(
        "listener", "http", "update", "-a", address, "--h2-stream-shrink-ratio", "7"
    )
    assert updated.returncode == 0, updated.stderr
    assert "warning: --h2-stream-shrink-ratio: it sizes sozu's stream slab" in updated.stderr
    served = proxy.cli("listener", "http", "update", "-a", address, "--h2-max-ping-per-window", "7")
    assert served.returncode == 0 and "warning" not in served.stderr, served.stderr
    plain = proxy.cli("cluster", "add", "-i", "d")
    assert plain.returncode == 0 and "warning" not in plain.stderr, plain.stderr
