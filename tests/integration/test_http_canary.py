"""A frontend's canary alternative through a running pysozu, on HTTP/1.1 and HTTP/2.

A pysozu extension (docs/canary.md): header > cookie > weight, as ingress-nginx decides. The
access log names the cluster that actually served each request.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from https_support import Pki

pytestmark = pytest.mark.timeout(90)
WEIGHTED = 400  # requests of a weight test: canary share 30% -> 120, sd ~9.2


def _config(
    port: int, tls_port: int, main: int, canary: int, cert: dict[str, str], log: Path
) -> str:
    rule = '{ cluster_id = "canary", header = "X-Canary", cookie = "canary", weight = 30 }'
    exact = '{ cluster_id = "canary", header = "X-Region", header_value = "eu", weight = 0 }'
    pattern = '{ cluster_id = "canary", header = "User-Agent", header_pattern = "Beta/[0-9]+" }'
    tls_front = (
        f'{{ address = "127.0.0.1:{tls_port}", hostname = "w.com", canary = {rule}, '
        f'certificate = "{cert["certificate"]}", key = "{cert["key"]}" }}'
    )
    return f"""
worker_count = 1
access_logs_target = "file://{log}"
access_logs_format = "json"

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"

[[listeners]]
protocol = "https"
address = "127.0.0.1:{tls_port}"

[clusters.main]
protocol = "http"
backends = [{{ address = "127.0.0.1:{main}", backend_id = "main-1" }}]
frontends = [
  {{ address = "127.0.0.1:{port}", hostname = "w.com", canary = {rule} }},
  {{ address = "127.0.0.1:{port}", hostname = "exact.com", canary = {exact} }},
  {{ address = "127.0.0.1:{port}", hostname = "pattern.com", canary = {pattern} }},
  {{ address = "127.0.0.1:{port}", hostname = "plain.com" }},
  {tls_front},
]

[clusters.canary]
protocol = "http"
backends = [{{ address = "127.0.0.1:{canary}", backend_id = "canary-1" }}]
frontends = [{{ address = "127.0.0.1:{port}", hostname = "canary.com" }}]
"""


@pytest.fixture
def setup(pysozu: Any, backends: Any, tmp_path: Path) -> tuple[Any, int, int, Pki, Path]:
    pki = Pki(tmp_path)
    cert = pki.issue("w.com")
    port, tls_port = pysozu.free_port(), pysozu.free_port()
    log = tmp_path / "access.log"
    main, canary = backends.start("main"), backends.start("canary")
    proxy = pysozu.start(_config(port, tls_port, main, canary, cert, log), workers=1)
    return proxy, port, tls_port, pki, log


def _bodies(client: httpx.Client, count: int, **kwargs: Any) -> list[str]:
    return [client.get("/", **kwargs).text for _ in range(count)]


def _h1(port: int, host: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"host": host}, timeout=10)


def test_header_then_cookie_then_weight_over_http1(setup: Any) -> None:
    _proxy, port, _tls, _pki, _log = setup
    with _h1(port, "w.com") as client:
        assert _bodies(client, 5, headers={"X-Canary": "always"}) == ["canary"] * 5
        # "never" wins over the cookie and the weight
        never = _bodies(client, 20, headers={"X-Canary": "never", "Cookie": "canary=always"})
        assert never == ["main"] * 20
        # another header value decides nothing: the cookie does
        cookie = _bodies(client, 5, headers={"X-Canary": "maybe", "Cookie": "a=1; canary=always"})
        assert cookie == ["canary"] * 5
        assert _bodies(client, 20, headers={"Cookie": "canary=never"}) == ["main"] * 20
        weighted = _bodies(client, WEIGHTED)
    share = weighted.count("canary")
    assert set(weighted) == {"main", "canary"}
    assert 70 <= share <= 170, share  # 30% of 400 with more than 5 standard deviations
    with _h1(port, "plain.com") as client:  # a route without canary is untouched
        assert _bodies(client, 20, headers={"X-Canary": "always"}) == ["main"] * 20


def test_header_value_and_pattern(setup: Any) -> None:
    _proxy, port, _tls, _pki, _log = setup
    with _h1(port, "exact.com") as client:
        assert _bodies(client, 3, headers={"X-Region": "eu"}) == ["canary"] * 3
        assert _bodies(client, 3, headers={"X-Region": "always"}) == ["main"] * 3
        assert _bodies(client, 3, headers={"X-Region": "eu-2"}) == ["main"] * 3
    with _h1(port, "pattern.com") as client:
        assert _bodies(client, 3, headers={"User-Agent": "x Beta/12 y"}) == ["canary"] * 3
        assert _bodies(client, 3, headers={"User-Agent": "Beta/x"}) == ["main"] * 3


def test_http2_streams_and_the_access_log_name_the_serving_cluster(setup: Any) -> None:
    _proxy, _port, tls_port, pki, log = setup
    transport = httpx.HTTPTransport(http2=True, verify=pki.client_context(), retries=0)
    with httpx.Client(
        transport=transport,
        base_url=f"https://127.0.0.1:{tls_port}",
        headers={"host": "w.com"},
        timeout=10,
        event_hooks={"request": [lambda r: r.extensions.update(sni_hostname="w.com")]},
    ) as client:
        first = client.get("/", headers={"X-Canary": "always"})
        assert first.http_version == "HTTP/2" and first.text == "canary"
        assert _bodies(client, 5, headers={"Cookie": "canary=always"}) == ["canary"] * 5
        assert _bodies(client, 5, headers={"X-Canary": "never"}) == ["main"] * 5
        weighted = _bodies(client, 200)
    assert 25 <= weighted.count("canary") <= 95, weighted.count("canary")  # 60 expected
    served = [first.text, *["canary"] * 5, *["main"] * 5, *weighted]
    records = _records(log, len(served))
    assert [r["cluster_id"] for r in records] == served
    assert {r["backend_id"] for r in records} == {"main-1", "canary-1"}


def _records(path: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def test_the_cli_adds_a_canary_route_and_refuses_bad_values(setup: Any) -> None:
    proxy, port, _tls, _pki, _log = setup
    added = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "cli.com",
        "--canary-cluster", "canary", "--canary-header", "X-C", "id", "main",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    with _h1(port, "cli.com") as client:
        assert _bodies(client, 3, headers={"X-C": "always"}) == ["canary"] * 3
        assert _bodies(client, 3) == ["main"] * 3
    bad = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "bad.com",
        "--canary-cluster", "canary", "--canary-weight", "150", "id", "main",
    )  # fmt: skip
    assert bad.returncode != 0
    assert "weight 150" in bad.stdout + bad.stderr
