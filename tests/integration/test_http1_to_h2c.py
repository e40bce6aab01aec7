"""HTTP/1.1 clients of a cluster with `http2 = true`: their requests reach a real h2c backend as
streams on shared connections (h1 -> h2), through a running pysozu."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from h2c_backend import H2cBackend, pattern
from https_support import Pki

pytestmark = pytest.mark.timeout(90)
HOST = {"host": "example.com"}


@pytest.fixture
def h2c() -> Iterator[H2cBackend]:
    backend = H2cBackend()
    yield backend
    backend.stop()


def _start(pysozu: Any, backend: H2cBackend, extra: str = "") -> int:
    port = pysozu.free_port()
    pysozu.start(
        f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"

[clusters.app]
protocol = "http"
http2 = true
{extra}
backends = [{{ address = "127.0.0.1:{backend.port}", backend_id = "h2c-1" }}]
frontends = [{{ address = "127.0.0.1:{port}", hostname = "example.com" }}]
""",
        workers=1,
    )
    return port


def _raw(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection; read what comes until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                return data
            data += piece


def _echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:300]
    result: dict[str, Any] = json.loads(response.content)
    return result


def test_get_and_post_reach_the_h2c_backend(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c)
    with httpx.Client(timeout=10) as client:
        first = client.get(f"http://127.0.0.1:{port}/first", headers=HOST)
        assert first.status_code == 200, (h2c.errors, first.text[:300])
        got = client.get(f"http://127.0.0.1:{port}/hello?x=1", headers={**HOST, "te": "gzip"})
        assert got.http_version == "HTTP/1.1"
        echo = _echo(got)
        assert echo["method"] == "GET" and echo["path"] == "/hello?x=1"
        fields = dict(echo["headers"])
        assert fields[":authority"] == "example.com" and fields[":scheme"] == "http"
        assert "host" not in fields and "connection" not in fields and "te" not in fields
        assert fields["x-forwarded-for"] == "127.0.0.1" and "sozu-id" in fields
        assert got.headers["sozu-id"]
        body = b"a" * 1000
        posted = _echo(client.post(f"http://127.0.0.1:{port}/post", headers=HOST, content=body))
        assert posted["length"] == 1000 and dict(posted["headers"])["content-length"] == "1000"

        def pieces() -> Iterator[bytes]:
            yield b"first "
            yield b"second"

        url = f"http://127.0.0.1:{port}/chunked"
        chunked = _echo(client.post(url, headers=HOST, content=pieces()))
        assert chunked["length"] == len(b"first second")
        assert chunked["sha256"] == hashlib.sha256(b"first second").hexdigest()
        fields = dict(chunked["headers"])
        assert "transfer-encoding" not in fields and "content-length" not in fields
        # Responses without a length come chunked; HEAD gets the head only.
        streamed = client.get(f"http://127.0.0.1:{port}/stream/100000", headers=HOST)
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert streamed.content == pattern(100_000)
        head = client.head(f"http://127.0.0.1:{port}/big/5000", headers=HOST)
        assert head.status_code == 200 and head.headers["content-length"] == "5000"
        assert head.content == b""
        again = _echo(client.get(f"http://127.0.0.1:{port}/after-head", headers=HOST))
        assert again["path"] == "/after-head"  # the connection stayed usable
    assert h2c.connections == 1


def test_eight_mebibytes_cross_both_ways(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c)
    big = pattern(8 << 20)
    with httpx.Client(timeout=60) as client:
        down = client.get(f"http://127.0.0.1:{port}/big/{len(big)}", headers=HOST)
        assert down.status_code == 200 and down.content == big
        up = _echo(client.post(f"http://127.0.0.1:{port}/up", headers=HOST, content=big))
        assert up["length"] == len(big) and up["sha256"] == hashlib.sha256(big).hexdigest()

        def slices() -> Iterator[bytes]:
            for at in range(0, len(big), 1 << 20):
                yield big[at : at + (1 << 20)]

        chunked = _echo(client.post(f"http://127.0.0.1:{port}/up2", headers=HOST, content=slices()))
        assert chunked["length"] == len(big)
        streamed = client.get(f"http://127.0.0.1:{port}/stream/{len(big)}", headers=HOST)
        assert streamed.content == big


def test_trailers_only_for_a_client_that_asks(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c)
    digest = hashlib.sha256(pattern(3000)).hexdigest().encode()
    head = b"GET /trailers/3000 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
    asked = _raw(port, head + b"TE: trailers\r\n\r\n")
    assert b"transfer-encoding: chunked" in asked.lower()
    assert asked.endswith(b"\r\n0\r\nx-checksum: " + digest + b"\r\n\r\n")
    fields = dict(h2c.requests[-1][0])
    assert fields[b"te"] == b"trailers"
    plain = _raw(port, head + b"\r\n")
    assert plain.endswith(b"\r\n0\r\n\r\n") and b"x-checksum" not in plain
    assert b"te" not in dict(h2c.requests[-1][0])


def test_connection_close_and_keep_alive(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c)
    closed = _raw(port, b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert closed.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in closed.lower()
    # Two requests on one client connection, then many client connections: one backend
    # connection carries every stream.
    two = b"GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n"
    both = _raw(port, two + two.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert both.count(b"HTTP/1.1 200 ") == 2
    for _ in range(20):
        with httpx.Client(timeout=10) as client:
            assert _echo(client.get(f"http://127.0.0.1:{port}/c", headers=HOST))["path"] == "/c"
    assert h2c.connections == 1
    http10 = _raw(port, b"GET /stream/10 HTTP/1.0\r\nHost: example.com\r\n\r\n")
    assert http10.startswith(b"HTTP/1.1 200 ") and http10.endswith(pattern(10))
    assert b"chunked" not in http10


def test_100_continue_crosses(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c)
    answer = _raw(port, b"GET /continue HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")


def test_backend_resets_are_502_or_a_cut_response(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c)
    with httpx.Client(timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{port}/reset", headers=HOST).status_code == 502
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"http://127.0.0.1:{port}/reset-late", headers=HOST)
        assert _echo(client.get(f"http://127.0.0.1:{port}/fine", headers=HOST))["path"] == "/fine"
    assert h2c.connections == 1  # a stream's reset leaves the connection up


def test_goaway_sends_new_streams_to_a_new_connection(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c)
    with httpx.Client(timeout=10) as client:
        first = client.get(f"http://127.0.0.1:{port}/goaway", headers=HOST)
        assert _echo(first)["path"] == "/goaway"
        deadline = time.monotonic() + 5
        while True:
            response = client.get(f"http://127.0.0.1:{port}/next", headers=HOST)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
        assert _echo(response)["path"] == "/next"
    assert h2c.connections == 2


def test_a_silent_backend_gets_504_after_back_timeout(pysozu: Any, h2c: H2cBackend) -> None:
    port = _start(pysozu, h2c, "back_timeout = 1")
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        response = client.get(f"http://127.0.0.1:{port}/silent", headers=HOST)
        assert response.status_code == 504
        assert time.monotonic() - started < 5
    deadline = time.monotonic() + 3
    while not h2c.resets and time.monotonic() < deadline:
        time.sleep(0.05)
    assert h2c.resets == 1  # its stream was reset


def test_cluster_add_http2_and_h2_enable_from_the_cli(pysozu: Any, h2c: H2cBackend) -> None:
    """`cluster add --http2` and `cluster h2 enable`: no warning, and HTTP/1.1 clients reach
    the backend in h2c."""
    port = pysozu.free_port()
    proxy = pysozu.start(f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n')
    backend = ("--backend-id", "b1", "--address", f"127.0.0.1:{h2c.port}")
    front = ("--address", f"127.0.0.1:{port}", "--hostname", "example.com", "id", "app")
    for argv in (
        ("cluster", "add", "-i", "app", "--http2"),
        ("backend", "add", "--id", "app", *backend),
        ("frontend", "http", "add", *front),
        ("cluster", "add", "-i", "other"),
        ("cluster", "h2", "enable", "-i", "other"),
    ):
        done = proxy.cli(*argv)
        assert done.returncode == 0 and "warning" not in done.stderr, (argv, done.stderr)
    with httpx.Client(timeout=10) as client:
        got = client.get(f"http://127.0.0.1:{port}/cli", headers=HOST)
        assert _echo(got)["path"] == "/cli"
    assert h2c.connections == 1


def test_an_h2_client_gets_504_from_a_silent_h2c_backend(pysozu: Any, h2c: H2cBackend) -> None:
    """h2 front to h2 back: the cluster's back_timeout (not the stream idle timeout) ends a
    silent backend's stream with sozu's 504."""
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
http2 = true
back_timeout = 1
backends = [{{ address = "127.0.0.1:{h2c.port}" }}]
frontends = [{{ address = "127.0.0.1:{port}", hostname = "example.com" }}]
""",
        workers=1,
    )
    with httpx.Client(http1=False, http2=True, timeout=10) as client:  # prior knowledge
        started = time.monotonic()
        response = client.get(f"http://127.0.0.1:{port}/silent", headers=HOST)
        assert response.http_version == "HTTP/2" and response.status_code == 504
        assert time.monotonic() - started < 5
        fine = client.get(f"http://127.0.0.1:{port}/fine", headers=HOST)
        assert _echo(fine)["path"] == "/fine"


def _access_lines(path: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_access_logs_name_the_protocol_and_the_h2c_backend(
    pysozu: Any, h2c: H2cBackend, tmp_path: Path
) -> None:
    """sozu's mux writes `http` or `https` (the listener's), for HTTP/1.1 and HTTP/2 clients
    alike; a request carried in h2c names its backend as an HTTP/1.1 one does."""
    pki = Pki(tmp_path)
    cert = pki.issue("example.com")
    clear, tls = pysozu.free_port(), pysozu.free_port()
    log = tmp_path / "access.log"
    pysozu.start(
        f"""
worker_count = 1
access_logs_target = "file://{log}"

[[listeners]]
protocol = "http"
address = "127.0.0.1:{clear}"
h2c = true

[[listeners]]
protocol = "https"
address = "127.0.0.1:{tls}"

[clusters.app]
protocol = "http"
http2 = true
backends = [{{ address = "127.0.0.1:{h2c.port}", backend_id = "h2c-1" }}]

[[clusters.app.frontends]]
address = "127.0.0.1:{clear}"
hostname = "example.com"

[[clusters.app.frontends]]
address = "127.0.0.1:{tls}"
hostname = "example.com"
certificate = "{cert["certificate"]}"
key = "{cert["key"]}"
""",
        workers=1,
    )
    with httpx.Client(timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{clear}/h1", headers=HOST).status_code == 200
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{clear}/h2c", headers=HOST).status_code == 200
    for http2 in (False, True):
        transport = httpx.HTTPTransport(http2=http2, verify=pki.client_context(), retries=0)
        with httpx.Client(transport=transport, timeout=10) as client:
            request = client.build_request("GET", f"https://127.0.0.1:{tls}/tls{int(http2)}")
            request.headers["host"] = f"example.com:{tls}"
            request.extensions["sni_hostname"] = "example.com"
            response = client.send(request)
            assert response.status_code == 200
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    lines = _access_lines(log, 4)
    by_path = {line.split()[-2]: line for line in lines}
    assert set(by_path) == {"/h1", "/h2c", "/tls0", "/tls1"}, lines
    expected = {"/h1": "http", "/h2c": "http", "/tls0": "https", "/tls1": "https"}
    for path, protocol in expected.items():
        line = by_path[path]
        assert f" None {protocol} example.com" in line, line
        assert f" 127.0.0.1:{h2c.port} " in line and " app h2c-1] " in line, line
        assert line.endswith(f"GET {path} 200"), line


def test_a_refused_backend_is_retried_on_another(pysozu: Any, h2c: H2cBackend) -> None:
    dead = pysozu.free_port()  # nothing listens there: connects are refused
    port = pysozu.free_port()
    pysozu.start(
        f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"

[clusters.app]
protocol = "http"
http2 = true
load_balancing = "ROUND_ROBIN"
backends = [
    {{ address = "127.0.0.1:{dead}", backend_id = "dead" }},
    {{ address = "127.0.0.1:{h2c.port}", backend_id = "h2c-1" }},
]
frontends = [{{ address = "127.0.0.1:{port}", hostname = "example.com" }}]
""",
        workers=1,
    )
    with httpx.Client(timeout=10) as client:
        for n in range(10):
            got = client.get(f"http://127.0.0.1:{port}/{n}", headers=HOST)
            assert _echo(got)["path"] == f"/{n}"
    assert h2c.connections == 1


def test_curl_http11_uploads_and_downloads(pysozu: Any, h2c: H2cBackend, tmp_path: Path) -> None:
    """curl as the HTTP/1.1 client: a chunked upload from a file, and a chunked download
    with its trailers (curl asks for them with --raw and `TE: trailers`)."""
    curl = shutil.which("curl")
    assert curl is not None
    port = _start(pysozu, h2c)
    data = tmp_path / "upload.bin"
    data.write_bytes(pattern(3 << 20))
    url = f"http://127.0.0.1:{port}"
    common = [curl, "-sS", "--http1.1", "-H", "Host: example.com", "--max-time", "30"]
    upload = subprocess.run(
        [*common, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{data}", f"{url}/up"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    echo = json.loads(upload.stdout)
    assert echo["length"] == 3 << 20
    assert echo["sha256"] == hashlib.sha256(pattern(3 << 20)).hexdigest()
    raw = subprocess.run(
        [*common, "--raw", "-H", "TE: trailers", f"{url}/trailers/100000"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    digest = hashlib.sha256(pattern(100_000)).hexdigest().encode()
    assert raw.stdout.endswith(b"\r\n0\r\nx-checksum: " + digest + b"\r\n\r\n")
