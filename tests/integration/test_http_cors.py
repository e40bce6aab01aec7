"""A frontend's CORS policy through a running pysozu, HTTP/1.1 and HTTP/2 (docs/cors.md).

The echo backend answers OPTIONS with 501 (it has no handler for it): a 204 can only come
from the proxy, and a 501 proves the request reached the backend.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from h2_support import EchoBackend
from https_support import Pki

pytestmark = pytest.mark.timeout(90)

POLICY = """
cors = { allow_origins = ["https://app.example.com", "https://*.example.org"], \
expose_headers = ["X-Total", "X-Page"], max_age = 600 }
"""
DEFAULT_HEADERS = (
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,"
    "Range,Authorization"
)


@pytest.fixture
def echo() -> Iterator[EchoBackend]:
    backend = EchoBackend()
    try:
        yield backend
    finally:
        backend.stop()


def _exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"{name} twice in {head!r}"
        headers[name.lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def _request(port: int, method: str, host: str, origin: str | None, extra: str = "") -> Any:
    head = f"{method} /things HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}"
    if origin is not None:
        head += f"Origin: {origin}\r\n"
    return _exchange(port, head.encode() + b"\r\n")


def _cors(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("access-control")}


def _start(pysozu: Any, echo: EchoBackend) -> tuple[Any, int]:
    port = pysozu.free_port()
    dead = pysozu.free_port()  # nothing listens there
    toml = f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{echo.port}" }}]

[[clusters.app.frontends]]
address = "127.0.0.1:{port}"
hostname = "plain.com"

[[clusters.app.frontends]]
address = "127.0.0.1:{port}"
hostname = "api.com"
max_body_size = 10
{POLICY}

[clusters.dead]
protocol = "http"
backends = [{{ address = "127.0.0.1:{dead}" }}]

[[clusters.dead.frontends]]
address = "127.0.0.1:{port}"
hostname = "dead.com"
cors = {{ allow_origins = ["https://app.example.com"], allow_credentials = false }}
"""
    return pysozu.start(toml, workers=1), port


def test_preflight_is_answered_by_the_proxy(pysozu: Any, echo: EchoBackend) -> None:
    _proxy, port = _start(pysozu, echo)
    extra = "Access-Control-Request-Method: PUT\r\n"
    status, headers, body = _request(port, "OPTIONS", "api.com", "https://app.example.com", extra)
    assert status == 204 and body == b""
    assert headers["content-length"] == "0"
    assert headers["content-type"] == "text/plain charset=UTF-8"
    assert _cors(headers) == {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT, POST, DELETE, PATCH, OPTIONS",
        "access-control-allow-headers": DEFAULT_HEADERS,
        "access-control-expose-headers": "X-Total, X-Page",
        "access-control-max-age": "600",
    }
    # One level of subdomain under a wildcard, any case; the origin is echoed as sent.
    status, headers, _ = _request(port, "OPTIONS", "api.com", "https://Eu.Example.org")
    assert status == 204 and headers["access-control-allow-origin"] == "https://Eu.Example.org"


def test_other_origins_get_nothing_and_reach_the_backend(pysozu: Any, echo: EchoBackend) -> None:
    _proxy, port = _start(pysozu, echo)
    for origin in (
        "https://evil.com",
        "https://a.b.example.org",  # two levels under the wildcard
        "http://app.example.com",  # another scheme
        "https://app.example.com.evil.com",
        "xhttps://app.example.com",  # ingress-nginx's regex has no start anchor; ours has
        None,
    ):
        status, headers, _ = _request(port, "OPTIONS", "api.com", origin)
        assert status == 501, origin  # the echo backend's answer to OPTIONS
        assert not _cors(headers), origin
        status, headers, _ = _request(port, "GET", "api.com", origin)
        assert status == 200 and not _cors(headers), origin


def test_allowed_origin_gets_headers_on_responses_and_answers(
    pysozu: Any, echo: EchoBackend
) -> None:
    _proxy, port = _start(pysozu, echo)
    status, headers, body = _request(port, "GET", "api.com", "https://app.example.com")
    assert status == 200 and json.loads(body)["method"] == "GET"
    cors = _cors(headers)
    assert cors["access-control-allow-origin"] == "https://app.example.com"
    assert cors["access-control-allow-credentials"] == "true"
    assert cors["access-control-expose-headers"] == "X-Total, X-Page"
    # The proxy's own answers carry them ("always"): a body over max_body_size ...
    extra = "Content-Length: 20\r\n"
    status, headers, _ = _request(port, "POST", "api.com", "https://app.example.com", extra)
    assert status == 413
    assert _cors(headers)["access-control-allow-origin"] == "https://app.example.com"
    # ... and a backend that cannot be reached (an answer after forwarding).
    status, headers, _ = _request(port, "GET", "dead.com", "https://app.example.com")
    assert status == 503
    assert _cors(headers)["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-credentials" not in headers
    # Routes without a policy are not touched.
    status, headers, _ = _request(port, "GET", "plain.com", "https://app.example.com")
    assert status == 200 and not _cors(headers)


def test_cli_adds_a_route_that_allows_every_origin(pysozu: Any, echo: EchoBackend) -> None:
    proxy, port = _start(pysozu, echo)
    added = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "star.com",
        "--cors", "--cors-allow-credentials", "false", "--cors-max-age", "60", "id", "app",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    # `*`: every request counts as allowed, with or without Origin, as in ingress-nginx.
    status, headers, _ = _request(port, "OPTIONS", "star.com", None)
    assert status == 204
    assert _cors(headers)["access-control-allow-origin"] == "*"
    assert _cors(headers)["access-control-max-age"] == "60"
    assert "access-control-allow-credentials" not in headers
    status, headers, _ = _request(port, "GET", "star.com", "https://anyone.net")
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    refused = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "bad.com",
        "--cors", "--cors-allow-methods", "GET, PO ST", "id", "app",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "'PO ST' is not an HTTP token" in refused.stdout + refused.stderr


def test_http2_preflight_and_response_headers(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    pki = Pki(tmp_path)
    cert = pki.issue("example.com")
    port = pysozu.free_port()
    toml = f"""
worker_count = 1

[[listeners]]
protocol = "https"
address = "127.0.0.1:{port}"

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{echo.port}" }}]

[[clusters.app.frontends]]
address = "127.0.0.1:{port}"
hostname = "example.com"
certificate = "{cert["certificate"]}"
key = "{cert["key"]}"
{POLICY}
"""
    pysozu.start(toml, workers=1)
    transport = httpx.HTTPTransport(http2=True, verify=pki.client_context(), retries=0)
    with httpx.Client(
        transport=transport,
        base_url=f"https://127.0.0.1:{port}",
        headers={"host": "example.com"},
        timeout=10,
        event_hooks={"request": [lambda r: r.extensions.update(sni_hostname="example.com")]},
    ) as client:
        allowed = {"origin": "https://app.example.com", "access-control-request-method": "PUT"}
        preflight = client.options("/things", headers=allowed)
        assert preflight.http_version == "HTTP/2"
        assert preflight.status_code == 204 and preflight.content == b""
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert preflight.headers["access-control-max-age"] == "600"
        assert preflight.headers["access-control-allow-methods"].startswith("GET, PUT")
        response = client.get("/things", headers={"origin": "https://x.example.org"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://x.example.org"
        assert response.headers["access-control-expose-headers"] == "X-Total, X-Page"
        other = client.options("/things", headers={"origin": "https://evil.com"})
        assert other.status_code == 501  # reached the backend
        assert "access-control-allow-origin" not in other.headers
        plain = client.get("/things")
        assert "access-control-allow-origin" not in plain.headers
