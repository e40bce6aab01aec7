"""An HTTPS backend in threads of the test process (ssl + http.server), for backend TLS tests.

It answers every GET with JSON saying what it saw: the SNI name the proxy sent, the client
certificate's common name (when it asks for one), the path, and which TLS connection carried
the request (to see pooled connections reused). Certificates come from a `trustme` CA.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from typing import Any

import trustme


def pattern(size: int) -> bytes:
    """`size` bytes of a repeating, position-dependent pattern."""
    block = bytes(range(251)) * (size // 251 + 1)
    return block[:size]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TlsBackendServer

    def do_GET(self) -> None:
        tls: ssl.SSLSocket = self.connection  # type: ignore[assignment]
        if self.path.startswith("/big/"):  # /big/<n>: n bytes, a known pattern
            size = int(self.path.removeprefix("/big/"))
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(pattern(size))
            return
        peer = tls.getpeercert() or {}
        subject = dict(item for part in peer.get("subject", ()) for item in part)
        body = json.dumps(
            {
                "path": self.path,
                "sni": getattr(tls, "sni", None),
                "client": subject.get("commonName"),
                "connection": id(tls),
                "alpn": tls.selected_alpn_protocol(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TlsBackendServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.handshakes = 0  # TLS connections accepted (the handshake may still fail)
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.handshakes += 1
        sock.settimeout(10)
        return self.context.wrap_socket(sock, server_side=True), address


class TlsBackend:
    """A running HTTPS backend for `names`, its certificate issued by `ca`."""

    def __init__(self, ca: trustme.CA, *names: str, client_ca: trustme.CA | None = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(*names).configure_cert(context)  # with its chain up to `ca`
        context.set_alpn_protocols(["http/1.1"])

        def remember(tls: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            tls.sni = name  # type: ignore[attr-defined]

        context.sni_callback = remember  # type: ignore[assignment]
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(context)
        self.server = TlsBackendServer(context)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> TlsBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
