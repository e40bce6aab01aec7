"""A frontend's connection limit through a running pysozu (nginx's `limit_conn`).

Requests in flight per client address: a request counts from routing to the end of its
response, on HTTP/1.1 and on HTTP/2 streams (h2c here). Every way a request ends gives its
count back (a served response, a backend that fails or stalls, a client that goes away, a
stream reset): after each, a limit of 1 serves the next request (a leaked count would 503).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

pytestmark = pytest.mark.timeout(60)


class _Backend(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self.release = threading.Event()  # /hold answers once set
        self.holding = threading.Semaphore(0)  # one release per /hold request arrived
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a held answer to a connection the proxy closed (its client went away)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Backend)
        if self.path == "/hold":
            server.holding.release()
            server.release.wait(20)
        elif self.path == "/drop":  # a backend that fails: closes without an answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        elif self.path == "/stall":  # never answers (the back_timeout ends it)
            time.sleep(3)
            return
        body = b"served " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def setup(pysozu: Any) -> Iterator[tuple[int, _Backend, Any]]:
    app = _Backend()
    port = pysozu.free_port()
    front = f'address = "127.0.0.1:{port}"'
    one = "connection_limit = { max_concurrent_per_client = 1 }"
    zone = 'connection_limit = { max_concurrent_per_client = 1, zone = "ns/web" }'
    exempt = 'connection_limit = { max_concurrent_per_client = 1, exempt_sources = ["127.0.0.1"] }'
    proxy = pysozu.start(
        f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
h2c = true

[clusters.app]
protocol = "http"
back_timeout = 1
backends = [{{ address = "127.0.0.1:{app.port}" }}]
frontends = [
  {{ {front}, hostname = "one.com", {one} }},
  {{ {front}, hostname = "z1.com", {zone} }},
  {{ {front}, hostname = "z2.com", {zone} }},
  {{ {front}, hostname = "free.com", {exempt} }},
  {{ {front}, hostname = "open.com" }},
]
""",
        workers=1,
    )
    yield port, app, proxy
    app.release.set()
    app.shutdown()
    app.server_close()


def _send(port: int, host: str, path: str, close: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), 10)
    last = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{last}\r\n".encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    """One whole response (its head and its Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the response was cut"
        body += chunk
    return data


def _status(port: int, host: str, path: str = "/") -> int:
    """The status of a whole exchange (read to its end: its count is back then)."""
    with _send(port, host, path, close=True) as sock:
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return int(data.split(b" ", 2)[1])


def _held(port: int, app: _Backend, host: str) -> socket.socket:
    """A request to /hold that the backend has received and holds."""
    sock = _send(port, host, "/hold")
    assert app.holding.acquire(timeout=10), "the held request never reached the backend"
    return sock


def _eventually_served(port: int, host: str) -> None:
    """The proxy notices a client's close on its next loop turn: allow it a moment."""
    for _ in range(100):
        if _status(port, host) == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"{host}: a count was never given back")


def test_a_request_in_flight_is_counted_until_its_response_ends(setup: Any) -> None:
    port, app, _ = setup
    held = _held(port, app, "one.com")
    with _send(port, "one.com", "/") as second:
        answer = _answer(second)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert _status(port, "open.com") == 200  # another route: not limited
    app.release.set()
    with held:
        assert _answer(held).startswith(b"HTTP/1.1 200 ")
        app.release.clear()
        # The keep-alive connection stays open and idle: it holds no count.
        assert _status(port, "one.com") == 200
        held.sendall(b"GET / HTTP/1.1\r\nHost: one.com\r\n\r\n")
        again = _answer(held)
        assert again.startswith(b"HTTP/1.1 200 "), again


def test_every_way_a_request_ends_gives_its_count_back(setup: Any) -> None:
    port, app, _ = setup
    assert _status(port, "one.com", "/drop") == 502  # the backend failed
    assert _status(port, "one.com") == 200
    assert _status(port, "one.com", "/stall") == 504  # the backend's timeout
    assert _status(port, "one.com") == 200
    held = _held(port, app, "one.com")
    held.close()  # the client went away while its request was in flight
    _eventually_served(port, "one.com")
    for _ in range(20):  # many requests: the count never drifts
        assert _status(port, "one.com") == 200


def test_a_zone_counts_a_client_once_across_its_routes(setup: Any) -> None:
    port, app, _ = setup
    with _held(port, app, "z1.com"):
        assert _status(port, "z2.com") == 503
        assert _status(port, "one.com") == 200  # its own limit
        app.release.set()
    _eventually_served(port, "z2.com")


def test_exempt_sources_are_not_limited(setup: Any) -> None:
    port, app, _ = setup
    with _held(port, app, "free.com"):
        assert _status(port, "free.com") == 200
        app.release.set()


def _h2_request(conn: h2.connection.H2Connection, stream: int, host: str, path: str) -> None:
    fields = [(":method", "GET"), (":scheme", "http"), (":authority", host), (":path", path)]
    conn.send_headers(stream, fields, end_stream=True)


def _h2_statuses(
    sock: socket.socket, conn: h2.connection.H2Connection, wanted: set[int]
) -> dict[int, int]:
    """Read until each stream in `wanted` has its response head (or ends)."""
    found: dict[int, int] = {}
    while not wanted <= found.keys():
        data = sock.recv(65536)
        assert data, "the connection closed"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                found[event.stream_id] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.StreamReset):
                found[event.stream_id] = 0
        sock.sendall(conn.data_to_send())
    return found


def test_http2_streams_count_each_and_a_reset_gives_it_back(setup: Any) -> None:
    port, app, _ = setup
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        _h2_request(conn, 1, "one.com", "/hold")
        sock.sendall(conn.data_to_send())
        assert app.holding.acquire(timeout=10)
        _h2_request(conn, 3, "one.com", "/")  # a second stream of the same client
        sock.sendall(conn.data_to_send())
        assert _h2_statuses(sock, conn, {3}) == {3: 503}
        assert _status(port, "one.com") == 503  # HTTP/1.1 from that address too
        conn.reset_stream(1)  # the client gives up on the held stream
        sock.sendall(conn.data_to_send())
        _eventually_served(port, "one.com")
        _h2_request(conn, 5, "one.com", "/")
        sock.sendall(conn.data_to_send())
        assert _h2_statuses(sock, conn, {5})[5] == 200
    app.release.set()


def test_the_cli_flag_adds_a_limited_route(setup: Any) -> None:
    port, app, proxy = setup
    added = proxy.cli(
        "frontend", "http", "add", "-a", f"127.0.0.1:{port}", "--hostname", "cli.com",
        "--connection-limit", "1", "id", "app",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    with _held(port, app, "cli.com"):
        assert _status(port, "cli.com") == 503
        app.release.set()
    _eventually_served(port, "cli.com")
