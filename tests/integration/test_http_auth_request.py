"""External authorisation (`auth_request`, ingress-nginx's `auth-url`) through a running pysozu.

A real auth service (answering the status its client asks for in `X-Want`) and a real app
backend (echoing what it received, and remembering it): allowed requests reach the app with
the copied headers, denied ones never do; a signin URL turns a 401 into a 302; an auth cluster
that is down, missing or answering 500 gives 500; the connection stays usable after a denial;
HTTP/2 requests (h2c here) get the same checks, a POST body held while the check runs.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Auth(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        assert isinstance(self.server, _Recorder)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append((self.command, self.path, headers))
        status = int(headers.get("x-want", "200"))
        body = b"auth says %d" % status
        self.send_response(status)
        if status == 200:
            self.send_header("X-Auth-Request-User", "alice")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


class _App(_Auth):
    def do_GET(self) -> None:
        assert isinstance(self.server, _Recorder)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length", "0"))
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, headers))
        out = json.dumps({"path": self.path, "headers": headers, "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_POST = do_GET


@pytest.fixture
def setup(pysozu: Any) -> Any:
    auth, app = _Recorder(_Auth), _Recorder(_App)
    port = pysozu.free_port()
    dead = pysozu.free_port()  # nothing listens there
    front = f'address = "127.0.0.1:{port}"'
    guarded = 'cluster_id = "auth", path = "/check?x=1", host = "auth.local", '
    guarded += 'response_headers = ["X-Auth-Request-User"]'
    signin = 'cluster_id = "auth", path = "/check", signin = "https://login.example/start"'
    pysozu.start(
        f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
h2c = true

[clusters.auth]
protocol = "http"
backends = [{{ address = "127.0.0.1:{auth.port}" }}]
frontends = []

[clusters.down]
protocol = "http"
backends = [{{ address = "127.0.0.1:{dead}" }}]
frontends = []

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{app.port}" }}]
frontends = [
  {{ {front}, hostname = "a.com", auth_request = {{ {guarded} }} }},
  {{ {front}, hostname = "s.com", auth_request = {{ {signin} }} }},
  {{ {front}, hostname = "down.com", auth_request = {{ cluster_id = "down" }} }},
  {{ {front}, hostname = "missing.com", auth_request = {{ cluster_id = "nope" }} }},
  {{ {front}, hostname = "open.com" }},
]
""",
        workers=1,
    )
    yield port, auth, app
    for server in (auth, app):
        server.shutdown()
        server.server_close()


def _client(port: int, host: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"host": host}, timeout=10)


def test_allowed_requests_reach_the_app_with_the_copied_headers(setup: Any) -> None:
    port, auth, _app = setup
    with _client(port, "a.com") as client:
        response = client.get("/page?q=1", headers={"X-Auth-Request-User": "mallory"})
        assert response.status_code == 200
        seen = response.json()
        assert seen["path"] == "/page?q=1"
        assert seen["headers"]["x-auth-request-user"] == "alice"  # the auth's, not the client's
        body = client.post("/upload", content=b"payload", headers={"X-Test": "1"})
        assert body.status_code == 200 and body.json()["body"] == "payload"
    method, path, headers = auth.seen[0]
    assert (method, path) == ("GET", "/check?x=1")
    assert headers["host"] == "auth.local"
    assert headers["x-original-url"] == "http://a.com/page?q=1"
    assert headers["x-original-method"] == "GET"
    assert headers["x-auth-request-redirect"] == "/page?q=1"
    assert headers["x-sent-from"] == "nginx-ingress-controller"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-auth-request-user"] == "mallory"  # the request's headers go along
    post = auth.seen[1][2]
    assert "content-length" not in post and "transfer-encoding" not in post  # never the body
    assert post["x-original-method"] == "POST" and post["x-test"] == "1"


def test_denied_requests_never_reach_the_app_and_the_connection_stays(setup: Any) -> None:
    port, auth, app = setup
    with _client(port, "a.com") as client:
        for status in (401, 403, 401):
            response = client.get("/secret", headers={"X-Want": str(status)})
            assert response.status_code == status
        assert client.get("/after").status_code == 200  # kept alive after denials
    assert [path for _, path, _ in app.seen] == ["/after"]
    assert len(auth.seen) == 4
    # One connection for the client's four requests: the proxy kept it alive.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        request = b"GET /x HTTP/1.1\r\nHost: a.com\r\nX-Want: 403\r\n\r\n"
        raw.sendall(request + request.replace(b"403", b"200"))
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            chunk = raw.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 403 ") and b"\r\n\r\nHTTP/1.1 200 " in data.replace(
            b"403 Forbidden\n", b""
        )


def test_a_401_with_a_signin_url_is_a_redirect(setup: Any) -> None:
    port, _auth, app = setup
    with _client(port, "s.com") as client:
        response = client.get("/a/b?c=d&e", headers={"X-Want": "401"})
        assert response.status_code == 302
        assert response.headers["location"] == (
            "https://login.example/start?rd=http://s.com/a/b%3Fc%3Dd%26e"
        )
        assert client.get("/x", headers={"X-Want": "403"}).status_code == 403  # no redirect
    assert app.seen == []


def test_failures_of_the_auth_service_are_500(setup: Any) -> None:
    port, _auth, app = setup
    with _client(port, "a.com") as client:
        failed = client.get("/", headers={"X-Want": "500"})
        assert failed.status_code == 500, failed.text
    with _client(port, "a.com") as client:
        assert client.get("/", headers={"X-Want": "302"}).status_code == 500
    for host in ("down.com", "missing.com"):
        with _client(port, host) as client:
            assert client.get("/").status_code == 500
    with _client(port, "open.com") as client:
        assert client.get("/open").status_code == 200  # routes without auth: untouched
    assert [path for _, path, _ in app.seen] == ["/open"]


def test_http2_requests_are_checked_the_same_way(setup: Any) -> None:
    port, _auth, app = setup
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(http1=False, http2=True, timeout=10) as client:  # h2c, prior knowledge
        allowed = client.get(f"{url}/page?q=1", headers={"host": "a.com"})
        assert allowed.http_version == "HTTP/2" and allowed.status_code == 200
        assert allowed.json()["headers"]["x-auth-request-user"] == "alice"
        denied = client.get(f"{url}/secret", headers={"host": "a.com", "x-want": "403"})
        assert denied.status_code == 403
        signin = client.get(f"{url}/p?x=1", headers={"host": "s.com", "x-want": "401"})
        assert signin.status_code == 302
        assert signin.headers["location"].startswith("https://login.example/start?rd=")
        assert client.get(f"{url}/", headers={"host": "down.com"}).status_code == 500
        body = b"x" * 200_000  # more than a stream window: held, then sent once allowed
        posted = client.post(f"{url}/upload", headers={"host": "a.com"}, content=body)
        assert posted.status_code == 200 and len(posted.json()["body"]) == len(body)
        refused = client.post(
            f"{url}/upload", headers={"host": "a.com", "x-want": "401"}, content=body
        )
        assert refused.status_code == 401
        # the connection still serves: the refused body's window was given back
        assert client.get(f"{url}/o", headers={"host": "open.com"}).status_code == 200
    paths = [path for _, path, _ in app.seen]
    assert paths == ["/page?q=1", "/upload", "/o"]  # nothing denied reached the app
