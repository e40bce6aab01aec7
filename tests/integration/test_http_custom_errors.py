"""A frontend's `custom_errors` through a running pysozu (ingress-nginx's custom-http-errors).

A backend answer with a listed status is dropped; the error cluster serves the request (a GET
of / with X-Code, X-Format, X-Original-URI, X-Request-ID and the static headers), and its
answer, status and body, is the client's. HTTP/1.1 and HTTP/2 (h2c) clients alike.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from h2c_backend import H2cBackend

pytestmark = pytest.mark.timeout(60)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.port = self.server_address[1]
        self.hits = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _App(BaseHTTPRequestHandler):
    """/status/N answers N with a body of its own; anything else 200."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        self.server.hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.partition("?")[0]
        status = int(path.split("/")[2]) if path.startswith("/status/") else 200
        body = b"app says %d " % status + b"x" * 5000  # a body the proxy must drop
        self.send_response(status)
        self.send_header("X-From", "app")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_POST = do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


class _Errors(_App):
    """Answers with the status it is told (X-Code) and what it got, as JSON."""

    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        self.server.hits += 1
        got = {k.lower(): v for k, v in self.headers.items()}
        body = json.dumps({"method": self.command, "path": self.path, "headers": got}).encode()
        self.send_response(int(got.get("x-code", "200")))
        self.send_header("Content-Type", "application/json")
        self.send_header("X-From", "errors")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET


@pytest.fixture
def setup(pysozu: Any) -> Iterator[tuple[int, _Server, _Server, Any]]:
    app, errors = _Server(_App), _Server(_Errors)
    port = pysozu.free_port()
    dead = pysozu.free_port()  # nothing listens there
    front = f'address = "127.0.0.1:{port}"'
    pages = 'custom_errors = { codes = [404, 503], cluster_id = "errors", '
    pages += 'headers = { X-Namespace = "shop", X-Service-Name = "app" } }'
    proxy = pysozu.start(
        f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
h2c = true

[clusters.errors]
protocol = "http"
backends = [{{ address = "127.0.0.1:{errors.port}" }}]
frontends = []

[clusters.down]
protocol = "http"
backends = [{{ address = "127.0.0.1:{dead}" }}]
frontends = [{{ {front}, hostname = "down.com", {pages} }}]

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{app.port}" }}]
frontends = [
  {{ {front}, hostname = "a.com", {pages} }},
  {{ {front}, hostname = "nowhere.com", custom_errors = {{ codes = [404], cluster_id = "nope" }} }},
  {{ {front}, hostname = "plain.com" }},
]
""",
        workers=1,
    )
    yield port, app, errors, proxy
    for server in (app, errors):
        server.shutdown()
        server.server_close()


def _client(port: int, host: str, http2: bool = False) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"host": host},
        timeout=10,
        http1=not http2,
        http2=http2,
    )


def test_a_listed_status_is_served_by_the_error_cluster(setup: Any) -> None:
    port, app, errors, _ = setup
    app.hits = errors.hits = 0
    with _client(port, "a.com") as client:
        answer = client.get("/status/404?q=1", headers={"accept": "application/json"})
        assert answer.status_code == 404
        assert answer.headers["x-from"] == "errors"
        seen = answer.json()
        assert (seen["method"], seen["path"]) == ("GET", "/")
        headers = seen["headers"]
        assert headers["x-code"] == "404"
        assert headers["x-format"] == "application/json"
        assert headers["x-original-uri"] == "/status/404?q=1"
        assert headers["x-namespace"] == "shop" and headers["x-service-name"] == "app"
        assert headers["x-request-id"] == answer.headers["sozu-id"]  # the id the app saw
        assert headers["host"] == "a.com"
        # Not listed: the app's answer goes through; the same connection serves on.
        other = client.get("/status/500")
        assert other.status_code == 500 and other.text.startswith("app says 500")
        assert client.get("/").text.startswith("app says 200")
        again = client.get("/status/404")
        assert again.status_code == 404 and again.headers["x-from"] == "errors"
        assert (app.hits, errors.hits) == (4, 2)  # each intercepted request asked both once
        assert again.json()["headers"]["x-format"] == "*/*"  # httpx sends Accept: */*


def test_a_request_with_a_body_and_a_head_request(setup: Any) -> None:
    port, _, _, _ = setup
    with _client(port, "a.com") as client:
        posted = client.post("/status/404", content=b"y" * 10000)
        assert posted.status_code == 404
        assert posted.json()["headers"]["x-code"] == "404"
        assert "content-length" not in posted.json()["headers"]  # no body goes there
        head = client.head("/status/404")
        assert head.status_code == 404 and head.headers["x-from"] == "errors"
        assert client.get("/").status_code == 200


def test_no_backend_503_is_served_by_the_error_cluster(setup: Any) -> None:
    port, _, _, _ = setup
    with _client(port, "down.com") as client:
        answer = client.get("/x")
        assert answer.status_code == 503
        assert answer.json()["headers"]["x-code"] == "503"


def test_an_error_cluster_that_is_missing_leaves_the_answer_alone(setup: Any) -> None:
    port, _, _, _ = setup
    with _client(port, "nowhere.com") as client:
        answer = client.get("/status/404")
        assert answer.status_code == 404 and answer.text.startswith("app says 404")


def test_http2_requests_are_served_the_same_way(setup: Any) -> None:
    port, _, _, _ = setup
    with _client(port, "a.com", http2=True) as client:
        answer = client.get("/status/404", headers={"accept": "text/html"})
        assert answer.http_version == "HTTP/2"
        assert answer.status_code == 404 and answer.headers["x-from"] == "errors"
        assert answer.json()["headers"]["x-format"] == "text/html"
        assert client.get("/").text.startswith("app says 200")  # the connection serves on


def test_the_cli_flags_add_a_route_with_error_pages(setup: Any) -> None:
    port, _, _, proxy = setup
    added = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "cli.com",
        "--error-codes", "404", "--error-cluster", "errors",
        "--error-header", "X-Ingress-Name=web", "id", "app",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    with _client(port, "cli.com") as client:
        answer = client.get("/status/404")
        assert answer.headers["x-from"] == "errors"
        assert answer.json()["headers"]["x-ingress-name"] == "web"


def test_raw_keep_alive_after_an_intercepted_answer(setup: Any) -> None:
    port, _, _, _ = setup
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        request = (
            b"GET /status/404 HTTP/1.1\r\nHost: a.com\r\n\r\nGET / HTTP/1.1\r\nHost: a.com\r\n\r\n"
        )
        sock.sendall(request)  # pipelined: the second follows the intercepted one
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.rstrip().endswith(b"x" * 10):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 404 ")
        assert b"HTTP/1.1 200 " in data


def test_an_h2c_backends_answer_is_intercepted_for_both_clients(pysozu: Any) -> None:
    errors, backend = _Server(_Errors), H2cBackend()
    try:
        port = pysozu.free_port()
        pages = '{ codes = [404, 502], cluster_id = "errors" }'
        pysozu.start(
            f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
h2c = true

[clusters.errors]
protocol = "http"
backends = [{{ address = "127.0.0.1:{errors.port}" }}]
frontends = []

[clusters.app]
protocol = "http"
http2 = true
backends = [{{ address = "127.0.0.1:{backend.port}" }}]
frontends = [{{ address = "127.0.0.1:{port}", hostname = "a.com", custom_errors = {pages} }}]
""",
            workers=1,
        )
        for http2 in (False, True):
            with _client(port, "a.com", http2=http2) as client:
                answer = client.get("/status/404")
                assert answer.status_code == 404 and answer.headers["x-from"] == "errors"
                assert answer.json()["headers"]["x-original-uri"] == "/status/404"
                reset = client.get("/reset")  # the backend resets the stream: the proxy's 502
                assert reset.status_code == 502 and reset.headers["x-from"] == "errors"
                assert client.get("/status/500").text == "h2c says\n"  # not listed
                assert client.get("/").status_code == 200
    finally:
        backend.stop()
        errors.shutdown()
        errors.server_close()
