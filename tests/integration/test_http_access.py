"""A frontend's access rules through a running pysozu: source lists, rate limits, body size.

pysozu extensions (docs/access-control.md), set with the TOML keys and the CLI flags.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(data)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def _status(port: int, host: str, headers: str = "", body: bytes = b"") -> int:
    head = f"POST / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    answer = _exchange(port, head.encode() + b"\r\n" + body)
    return int(answer.split(b" ", 2)[1])


def _start(pysozu: Any, backends: Any, extra_front: str, listener: str = "") -> tuple[Any, int]:
    port = pysozu.free_port()
    app = backends.start("app")
    toml = f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
{listener}

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{app}" }}]

[[clusters.app.frontends]]
address = "127.0.0.1:{port}"
hostname = "open.com"

[[clusters.app.frontends]]
address = "127.0.0.1:{port}"
hostname = "guarded.com"
{extra_front}
"""
    return pysozu.start(toml, workers=1), port


def test_allowed_sources_refuse_other_clients_with_403(pysozu: Any, backends: Any) -> None:
    proxy, port = _start(pysozu, backends, 'allowed_sources = ["10.0.0.0/8"]')
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: guarded.com\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer
    assert b"may not use this route" in answer
    assert _status(port, "open.com") == 200  # other routes are not touched
    # The CLI adds a route the loopback client may use.
    added = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "local.com",
        "--allow-source", "127.0.0.0/8", "--allow-source", "::1", "id", "app",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert _status(port, "local.com") == 200


def test_denied_sources_refuse_their_clients(pysozu: Any, backends: Any) -> None:
    _proxy, port = _start(pysozu, backends, 'denied_sources = ["127.0.0.1"]')
    assert _status(port, "guarded.com") == 403
    assert _status(port, "open.com") == 200


def test_behind_a_trusted_proxy_the_forwarded_client_is_checked(pysozu: Any, backends: Any) -> None:
    _proxy, port = _start(
        pysozu,
        backends,
        'allowed_sources = ["203.0.113.0/24"]',
        listener='trusted_proxies = ["127.0.0.1"]',
    )
    assert _status(port, "guarded.com", "X-Forwarded-For: 203.0.113.9\r\n") == 200
    assert _status(port, "guarded.com", "X-Forwarded-For: 203.0.113.9, 198.51.100.1\r\n") == 403
    assert _status(port, "guarded.com") == 403  # the peer itself is not allowed


def test_rate_limit_answers_its_status_beyond_the_burst(pysozu: Any, backends: Any) -> None:
    _proxy, port = _start(
        pysozu, backends, "rate_limits = [{ rate = 0.01, burst = 2, status = 429 }]"
    )
    statuses = [_status(port, "guarded.com") for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429], statuses
    assert _status(port, "open.com") == 200
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: guarded.com\r\n\r\n")
    assert b"Too many connections or requests" in answer


def test_max_body_size_answers_413_for_a_length_and_for_chunks(pysozu: Any, backends: Any) -> None:
    _proxy, port = _start(pysozu, backends, "max_body_size = 100")
    assert _status(port, "guarded.com", body=b"x" * 100) == 200
    answer = _exchange(
        port,
        b"POST / HTTP/1.1\r\nHost: guarded.com\r\nContent-Length: 101\r\n\r\n" + b"x" * 101,
    )
    assert answer.startswith(b"HTTP/1.1 413 Payload Too Large\r\n"), answer
    assert b"the limit is 100 bytes" in answer
    chunked = (
        b"POST / HTTP/1.1\r\nHost: guarded.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"40\r\n" + b"x" * 64 + b"\r\n40\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n"
    )
    assert _exchange(port, chunked).startswith(b"HTTP/1.1 413 "), "chunked over the limit"
    # Expect: 100-continue over the limit is refused before the client sends the body.
    expect = b"POST / HTTP/1.1\r\nHost: guarded.com\r\nContent-Length: 5000\r\n"
    expect += b"Expect: 100-continue\r\n\r\n"
    assert _exchange(port, expect).startswith(b"HTTP/1.1 413 ")
    assert _status(port, "open.com", body=b"x" * 5000) == 200


def test_invalid_access_settings_are_refused_by_the_cli(pysozu: Any, backends: Any) -> None:
    proxy, port = _start(pysozu, backends, "")
    refused = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "x.com",
        "--allow-source", "10.0.0.1/8", "id", "app",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "bits set after its prefix" in refused.stdout + refused.stderr
