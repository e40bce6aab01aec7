"""HTTP/2 clients through a running pysozu: ALPN, streams, bodies, flow control, answers.

The front speaks h2 over TLS (ALPN), the backend HTTP/1.1 (h2 -> h1). Real clients: httpx
(http2), curl --http2, h2load, and a raw h2 client for what those never send.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.events
import httpx
import pytest
from h2_support import EchoBackend, RawH2, pattern, tls_config
from https_support import Pki
from hyperframe.frame import GoAwayFrame

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def echo() -> Iterator[EchoBackend]:
    backend = EchoBackend()
    try:
        yield backend
    finally:
        backend.stop()


def _start(pysozu: Any, echo: EchoBackend, tmp_path: Path, listener: str = "") -> tuple[int, Pki]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    pki = Pki(tmp_path)
    cert = pki.issue("example.com", "other.example.com")
    port = pysozu.free_port()
    pysozu.start(tls_config(port, echo.port, cert, listener), workers=1)
    return port, pki


def _client(port: int, pki: Pki, host: str = "example.com") -> httpx.Client:
    """An HTTP/2 client to 127.0.0.1:port that says `host` (SNI, :authority)."""
    transport = httpx.HTTPTransport(http2=True, verify=pki.client_context(), retries=0)
    return httpx.Client(
        transport=transport,
        base_url=f"https://127.0.0.1:{port}",
        headers={"host": f"{host}:{port}"},
        timeout=10,
        event_hooks={"request": [lambda request: _sni(request, host)]},
    )


def _sni(request: httpx.Request, host: str) -> None:
    request.extensions["sni_hostname"] = host


def test_get_and_post_over_h2(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    port, pki = _start(pysozu, echo, tmp_path)
    with _client(port, pki) as client:
        response = client.get("/hello?x=1", headers={"x-custom": "yes"})
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert response.headers["sozu-id"]
        seen = json.loads(response.content)
        assert seen["method"] == "GET" and seen["path"] == "/hello?x=1"
        headers = dict(seen["headers"])
        assert headers["host"] == f"example.com:{port}"
        assert headers["x-custom"] == "yes"
        assert headers["x-forwarded-proto"] == "https"
        assert "sozu-id" in headers
        body = pattern(300_000)
        posted = json.loads(client.post("/upload", content=body).content)
        assert posted["length"] == len(body)
        assert posted["sha256"] == hashlib.sha256(body).hexdigest()
        streamed = json.loads(client.post("/stream", content=iter([b"a" * 1000] * 50)).content)
        assert streamed["length"] == 50_000  # no Content-Length: chunked to the backend
        assert ["transfer-encoding", "chunked"] in streamed["headers"]


def test_alpn_order_and_disable_http11_reach_clients(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    def negotiated(port: int, pki: Pki, offers: list[str]) -> str | None:
        context = pki.client_context()
        context.set_alpn_protocols(offers)
        with (
            socket.create_connection(("127.0.0.1", port), 5) as raw,
            context.wrap_socket(raw, server_hostname="example.com") as tls,
        ):
            return tls.selected_alpn_protocol()

    port, pki = _start(pysozu, echo, tmp_path)
    assert negotiated(port, pki, ["h2", "http/1.1"]) == "h2"
    assert negotiated(port, pki, ["http/1.1"]) == "http/1.1"
    port, pki = _start(pysozu, echo, tmp_path / "b", 'alpn_protocols = ["http/1.1", "h2"]')
    assert negotiated(port, pki, ["h2", "http/1.1"]) == "http/1.1"  # the server's order
    port, pki = _start(
        pysozu, echo, tmp_path / "c", 'disable_http11 = true\nalpn_protocols = ["h2"]'
    )
    assert negotiated(port, pki, ["h2", "http/1.1"]) == "h2"
    assert negotiated(port, pki, ["http/1.1"]) is None


async def _async_sni(request: httpx.Request) -> None:
    _sni(request, "example.com")


def test_many_streams_share_one_connection(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    port, pki = _start(pysozu, echo, tmp_path)

    async def run() -> list[int]:
        transport = httpx.AsyncHTTPTransport(http2=True, verify=pki.client_context(), retries=0)
        async with httpx.AsyncClient(
            transport=transport,
            base_url=f"https://127.0.0.1:{port}",
            headers={"host": f"example.com:{port}"},
            timeout=20,
            event_hooks={"request": [_async_sni]},
        ) as client:
            responses = await asyncio.gather(*(client.get(f"/n/{n}") for n in range(60)))
            return [json.loads(r.content)["path"] == f"/n/{n}" for n, r in enumerate(responses)]

    assert all(asyncio.run(run()))


def test_large_and_chunked_responses_cross_flow_control(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    port, pki = _start(pysozu, echo, tmp_path)
    with _client(port, pki) as client:
        big = client.get("/big/8388608")
        assert big.status_code == 200 and big.content == pattern(8_388_608)
        chunked = client.get("/chunked/1000000")
        assert chunked.content == pattern(1_000_000)
        assert "transfer-encoding" not in chunked.headers
        head = client.head("/big/1000")
        assert head.status_code == 200 and head.content == b""
        assert client.get("/status/204").status_code == 204
        assert client.get("/status/503").status_code == 503


def test_the_proxys_own_answers_are_h2_responses(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    port, pki = _start(pysozu, echo, tmp_path)
    with _client(port, pki) as client:
        missing = client.get("/", headers={"host": f"other.example.com:{port}"})
        assert missing.status_code == 404
        assert missing.headers["sozu-id"]
        assert b"No frontend matches" in missing.content
        assert "connection" not in missing.headers
        # the connection is still usable after an answer
        assert client.get("/again").status_code == 200


def test_a_request_for_a_host_the_certificate_does_not_cover_gets_421(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    port, pki = _start(pysozu, echo, tmp_path)
    raw = RawH2(port, pki.client_context())
    try:
        stream = raw.request("/", host="unknown.example.com")
        events = raw.events(h2.events.StreamEnded)
        [head] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
        assert head.stream_id == stream
        assert dict(head.headers)[b":status"] == b"421"
    finally:
        raw.close()


def test_curl_http2(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is needed (scripts/test installs it)")
    port, pki = _start(pysozu, echo, tmp_path)
    ca = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca))
    done = subprocess.run(
        [
            curl, "-sS", "--http2", "--cacert", str(ca), "-w", "%{http_version} %{http_code}",
            "-o", "/dev/null", "-o", "/dev/null", "--resolve", f"example.com:{port}:127.0.0.1",
            f"https://example.com:{port}/x", f"https://example.com:{port}/y",
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2 2002 200", done.stdout


def test_h2load_small_requests_all_succeed(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    h2load = shutil.which("h2load")
    if h2load is None:
        pytest.fail("h2load is needed (Debian nghttp2-client; scripts/test installs it)")
    port, _ = _start(pysozu, echo, tmp_path)
    done = subprocess.run(
        [h2load, "-n", "2000", "-c", "4", "-m", "10", f"https://example.com:{port}/n",
         f"--connect-to=127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2000 succeeded, 0 failed, 0 errored" in done.stdout, done.stdout
    assert "status codes: 2000 2xx" in done.stdout, done.stdout


def test_rapid_reset_ends_the_connection_with_enhance_your_calm(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    port, pki = _start(pysozu, echo, tmp_path)
    raw = RawH2(port, pki.client_context())
    try:
        try:
            for _ in range(300):
                stream = raw.request("/slow", end=False)
                raw.conn.reset_stream(stream)
            raw.flush()
        except (ssl.SSLError, OSError):
            pass  # the proxy's GOAWAY came first: it reads no more frames, writes may fail
        events = raw.events(h2.events.ConnectionTerminated)
        [goaway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        raw.close()
    # other connections are not affected
    with _client(port, pki) as client:
        assert client.get("/fine").status_code == 200


def test_soft_stop_sends_goaway_and_finishes_the_stream_in_flight(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    port, pki = _start(pysozu, echo, tmp_path)
    raw = RawH2(port, pki.client_context())
    try:
        raw.request("/before")
        assert any(isinstance(e, h2.events.StreamEnded) for e in raw.events(h2.events.StreamEnded))
        proxy = pysozu.instances[-1]
        stopped = subprocess.Popen(
            [*proxy_cli(proxy), "shutdown"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        raw.read_until_closed(timeout=15)
        goaways = [f for f in raw.frames() if isinstance(f, GoAwayFrame)]
        # sozu's double GOAWAY: first "the last stream may be anything", then the real one
        assert [g.last_stream_id for g in goaways] == [2**31 - 1, 1], goaways
        assert all(g.error_code == 0 for g in goaways)
        assert stopped.wait(30) == 0
    finally:
        raw.close()


def proxy_cli(proxy: Any) -> list[str]:
    import sys

    return [sys.executable, "-m", "dataplane", "-c", str(proxy.config_path)]


_ = ssl  # the TLS contexts come from https_support.Pki


def test_an_h2c_listener_speaks_both_protocols(pysozu: Any, echo: EchoBackend) -> None:
    port = pysozu.free_port()
    pysozu.start(
        f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
h2c = true

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{echo.port}" }}]
frontends = [{{ address = "127.0.0.1:{port}", hostname = "example.com" }}]
""",
        workers=1,
    )
    with httpx.Client(http1=False, http2=True, timeout=10) as client:  # prior knowledge
        response = client.get(f"http://127.0.0.1:{port}/h2", headers={"host": "example.com"})
        assert response.http_version == "HTTP/2"
        assert json.loads(response.content)["path"] == "/h2"
    with httpx.Client(timeout=10) as client:
        response = client.get(f"http://127.0.0.1:{port}/h1", headers={"host": "example.com"})
        assert response.http_version == "HTTP/1.1"
        assert json.loads(response.content)["path"] == "/h1"
    h2load = shutil.which("h2load")
    assert h2load is not None
    done = subprocess.run(
        [h2load, "-n", "500", "-c", "2", "-m", "10", f"http://127.0.0.1:{port}/n",
         "-H", ":authority: example.com"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "500 succeeded, 0 failed" in done.stdout, done.stdout


def test_max_connections_per_ip_counts_h2_connections(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    """An HTTP/2 connection counts once per cluster against max_connections_per_ip, as an
    HTTP/1.1 one does: the third connection from one address gets 429."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    pki = Pki(tmp_path)
    cert = pki.issue("example.com")
    port = pysozu.free_port()
    config = tls_config(port, echo.port, cert).replace(
        'protocol = "http"\n', 'protocol = "http"\nmax_connections_per_ip = 2\nretry_after = 9\n'
    )
    pysozu.start(config, workers=1)
    clients = [_client(port, pki) for _ in range(3)]
    try:
        assert [c.get("/").status_code for c in clients[:2]] == [200, 200]
        refused = clients[2].get("/")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "9"
        assert clients[0].get("/again").status_code == 200  # a counted connection goes on
        clients[0].close()
        assert _wait_for_status(clients[2], 200)
    finally:
        for client in clients:
            client.close()


def _wait_for_status(client: httpx.Client, status: int) -> bool:
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if client.get("/").status_code == status:
            return True
        time.sleep(0.1)
    return False
