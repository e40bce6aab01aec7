"""A cluster's hash_key (ingress-nginx's upstream-hash-by) through a running pysozu: every
request with the same key reaches the same backend, over HTTP/1.1 and HTTP/2 (h2c) alike, and
different keys spread over the backends."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)


def _named(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_one_key_one_backend_over_http1_and_h2(pysozu: Any) -> None:
    servers = [_named(f"b{n}") for n in range(3)]
    port = pysozu.free_port()
    backends = ", ".join(f'{{ address = "127.0.0.1:{s.server_address[1]}" }}' for s in servers)
    pysozu.start(
        f"""
worker_count = 1

[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
h2c = true

[clusters.shop]
protocol = "http"
load_balancing = "MAGLEV"
hash_key = "$arg_user"
frontends = [{{ address = "127.0.0.1:{port}", hostname = "shop.example" }}]
backends = [{backends}]
""",
        workers=1,
    )
    try:
        seen: dict[int, set[str]] = {}
        for http2 in (False, True):
            with httpx.Client(http1=not http2, http2=http2, timeout=10) as client:
                for round_ in range(3):
                    for user in range(12):
                        url = f"http://127.0.0.1:{port}/cart?user={user}&r={round_}"
                        response = client.get(url, headers={"host": "shop.example"})
                        assert response.status_code == 200
                        seen.setdefault(user, set()).add(response.text)
        assert all(len(names) == 1 for names in seen.values()), seen  # both protocols agree
        assert len({next(iter(names)) for names in seen.values()}) >= 2  # keys spread
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
