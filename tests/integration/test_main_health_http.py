"""`/healthz` and `/readyz` on main's HTTP endpoint (`[prometheus] address`): what the chart's
probes GET instead of starting `pysozu status` (a Python process) per probe."""

from __future__ import annotations

import http.client
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_health_and_readiness_follow_the_workers_and_listeners(pysozu: Any, backends: Any) -> None:
    port, prometheus = pysozu.free_port(), pysozu.free_port()
    app = backends.start("app")
    config = pysozu.http_config(port, {"app": ("example.com", [app])})
    proxy = pysozu.start(f'[prometheus]\naddress = "127.0.0.1:{prometheus}"\n\n{config}')
    status, body = _get(prometheus, "/healthz")
    assert status == 200 and "2 worker(s) running" in body
    status, body = _get(prometheus, "/readyz")
    assert status == 200 and "1 active listener(s)" in body, body
    deactivated = proxy.cli("listener", "http", "deactivate", "-a", f"127.0.0.1:{port}")
    assert deactivated.returncode == 0, deactivated.stderr
    status, body = _get(prometheus, "/readyz")
    assert status == 503 and "no listener is active" in body
    assert _get(prometheus, "/healthz")[0] == 200  # alive, just not ready
    assert _get(prometheus, "/nope")[0] == 404
