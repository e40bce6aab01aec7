"""HSTS through a real `pysozu start`, as sozu does it: HTTPS only; Strict-Transport-Security is
added when the backend sent none (the backend's wins) unless `force_replace_backend`; default
answers (3xx, 401, 5xx) carry it too; exactly one header per response. Clients are real TLS
clients; certificates come from trustme."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest
from http_support import Backend, Seen, ok
from https_support import Pki, TlsClient

pytestmark = pytest.mark.timeout(60)

STS = "Strict-Transport-Security"
BACKEND_STS = f"{STS}: max-age=1\r\n"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def hsts_config(
    port: int, cert: dict[str, str], frontends: list[tuple[str, int | None, str]], listener: str
) -> str:
    """One HTTPS listener; per frontend (hostname, backend port or None for none, extra keys)."""
    lines = ["[[listeners]]", 'protocol = "https"', f'address = "127.0.0.1:{port}"', listener, ""]
    for index, (hostname, backend, extra) in enumerate(frontends):
        front = f'address = "127.0.0.1:{port}", hostname = "{hostname}"'
        front += f', certificate = "{cert["certificate"]}", key = "{cert["key"]}"'
        lines += [
            f"[clusters.c{index}]",
            'protocol = "http"',
            f"frontends = [{{ {front}{extra} }}]",
        ]
        backend_entry = f'{{ address = "127.0.0.1:{backend}", backend_id = "c{index}-1" }}'
        lines += [f"backends = [{backend_entry if backend else ''}]", ""]
    return "\n".join(lines)


def sts_values(response: http.client.HTTPResponse) -> list[str]:
    return [value for name, value in response.getheaders() if name.lower() == STS.lower()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chunked_in_pieces(seen: Seen, conn: socket.socket) -> bytes:
    """A chunked response written in several frames, the head alone first."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in (b"one", b"two", b"three"):
        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    return b"0\r\n\r\n"


def test_listener_hsts_is_added_once_and_the_backend_header_wins(pysozu, pki) -> None:
    cert = pki.issue("plain.example", "own.example", "forced.example", "chunked.example")
    port = pysozu.free_port()
    plain, own = Backend(respond=ok(b"plain")), Backend(respond=ok(b"own", BACKEND_STS))
    forced = Backend(respond=ok(b"forced", BACKEND_STS + BACKEND_STS))
    chunked = Backend(respond=chunked_in_pieces)
    forced_hsts = ", hsts = { enabled = true, max_age = 42, force_replace_backend = true }"
    listener = "[listeners.hsts]\nenabled = true\npreload = true"
    try:
        pysozu.start(
            hsts_config(
                port,
                cert,
                [
                    ("plain.example", plain.port, ""),
                    ("own.example", own.port, ""),
                    ("forced.example", forced.port, forced_hsts),
                    ("chunked.example", chunked.port, ""),
                ],
                listener,
            )
        )
        with TlsClient(port, "plain.example", pki.client_context()) as client:
            for _ in range(2):  # keep-alive: every response carries it
                response = client.get("plain.example")
                assert (response.status, response.body) == (200, b"plain")
                assert sts_values(response) == ["max-age=31536000; preload"]
        with TlsClient(port, "own.example", pki.client_context()) as client:
            response = client.get("own.example")
            assert sts_values(response) == ["max-age=1"]  # set if absent: the backend's wins
        with TlsClient(port, "forced.example", pki.client_context()) as client:
            response = client.get("forced.example")
            assert response.body == b"forced"
            assert sts_values(response) == ["max-age=42"]  # both backend headers replaced
        with TlsClient(port, "chunked.example", pki.client_context()) as client:
            response = client.get("chunked.example")
            assert response.body == b"onetwothree"
            assert sts_values(response) == ["max-age=31536000; preload"]
    finally:
        for backend in (plain, own, forced, chunked):
            backend.close()


def test_default_answers_carry_hsts_on_3xx_401_5xx_not_on_404(pysozu, pki) -> None:
    cert = pki.issue("moved.example", "denied.example", "down.example", "empty.example")
    port = pysozu.free_port()
    listener = "[listeners.hsts]\nenabled = true\nmax_age = 900"
    pysozu.start(
        hsts_config(
            port,
            cert,
            [
                ("moved.example", closed_port(), ', redirect = "permanent"'),
                ("denied.example", closed_port(), ', redirect = "unauthorized"'),
                ("down.example", closed_port(), ", hsts = { enabled = true, max_age = 5 }"),
                ("empty.example", None, ""),
            ],
            listener,
        )
    )
    expected = {
        "moved.example": (301, ["max-age=900"]),
        "denied.example": (401, ["max-age=900"]),
        "down.example": (503, ["max-age=5"]),  # the frontend's own setting
        "empty.example": (503, ["max-age=900"]),  # no backend at all
    }
    for host, (status, values) in expected.items():
        with TlsClient(port, host, pki.client_context()) as client:
            response = client.get(host)
            assert (response.status, sts_values(response)) == (status, values), host
    with TlsClient(port, "down.example", pki.client_context()) as client:
        response = client.get("unrouted.example")
        assert response.status in (404, 421)
        assert sts_values(response) == []


def test_hsts_is_never_sent_over_plain_http(pysozu) -> None:
    port = pysozu.free_port()
    backend = Backend(respond=ok(b"plain"))
    try:
        toml = f"""
[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"

[clusters.a]
protocol = "http"
frontends = [{{ address = "127.0.0.1:{port}", hostname = "a.example" }}]
backends = [{{ address = "127.0.0.1:{backend.port}", backend_id = "a-1" }}]
"""
        pysozu.start(toml)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/", headers={"Host": "a.example"})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader(STS) is None
        connection.close()
    finally:
        backend.close()
    refused = pysozu.start(toml + "\n[listeners.hsts]\nenabled = true\n", wait=False)
    assert refused.process.wait(timeout=30) != 0
    assert "HSTS" in refused.log()


def test_hsts_disabled_on_a_frontend_overrides_the_listener(pysozu, pki) -> None:
    cert = pki.issue("a.example")
    port = pysozu.free_port()
    backend = Backend(respond=ok(b"app"))
    try:
        pysozu.start(
            hsts_config(
                port,
                cert,
                [("a.example", backend.port, ", hsts = { enabled = false }")],
                "[listeners.hsts]\nenabled = true",
            )
        )
        with TlsClient(port, "a.example", pki.client_context()) as client:
            assert sts_values(client.get("a.example")) == []
    finally:
        backend.close()


def test_cli_sets_frontend_hsts_and_patches_the_listener_default(pysozu, pki) -> None:
    cert = pki.issue("a.example", "b.example")
    port = pysozu.free_port()
    backend = Backend(respond=ok(b"app", BACKEND_STS))
    try:
        instance = pysozu.start(hsts_config(port, cert, [("a.example", backend.port, "")], ""))
        with TlsClient(port, "a.example", pki.client_context()) as client:
            assert sts_values(client.get("a.example")) == ["max-age=1"]  # no HSTS configured
        added = instance.cli(
            "frontend", "https", "add", "-a", f"127.0.0.1:{port}", "--hostname", "b.example",
            "--hsts-max-age", "77", "--hsts-include-subdomains", "--hsts-force-replace-backend",
            "id", "c0",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr + added.stdout
        with TlsClient(port, "b.example", pki.client_context()) as client:
            assert sts_values(client.get("b.example")) == ["max-age=77; includeSubDomains"]
        patched = instance.cli(
            "listener", "https", "update", "-a", f"127.0.0.1:{port}",
            "--hsts-max-age", "300", "--hsts-force-replace-backend",
        )  # fmt: skip
        assert patched.returncode == 0, patched.stderr + patched.stdout
        with TlsClient(port, "a.example", pki.client_context()) as client:
            assert sts_values(client.get("a.example")) == ["max-age=300"]  # inherits the patch
        with TlsClient(port, "b.example", pki.client_context()) as client:
            assert sts_values(client.get("b.example")) == ["max-age=77; includeSubDomains"]
    finally:
        backend.close()
