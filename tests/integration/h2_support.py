"""What the HTTP/2 tests share: an echo backend (HTTP/1.1), TLS setups, a raw h2 client.

`EchoBackend` answers every request with a JSON description of what it received (method,
path, headers, body length and digest), except:
- `/big/<n>`: n bytes (a repeating pattern, `pattern(n)`), with Content-Length;
- `/chunked/<n>`: n bytes in chunks, then a trailer `x-checksum`;
- `/status/<code>`: that status, empty body.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hyperframe.frame import Frame


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 64
    return (block * (size // len(block) + 1))[:size]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self) -> None:
        body = self._body()
        path = self.path
        if path.startswith("/big/"):
            data = pattern(int(path.split("/")[2]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        if path.startswith("/chunked/"):
            data = pattern(int(path.split("/")[2]))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "x-checksum")
            self.end_headers()
            for at in range(0, len(data), 10_000):
                piece = data[at : at + 10_000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            digest = hashlib.sha256(data).hexdigest()
            self.wfile.write(b"0\r\nx-checksum: " + digest.encode() + b"\r\n\r\n")
            return
        if path.startswith("/status/"):
            status = int(path.split("/")[2])
            self.send_response(status)
            if status not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = json.dumps(
            {
                "method": self.command,
                "path": path,
                "headers": [[name.lower(), value] for name, value in self.headers.items()],
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default 5 drops the SYNs of a burst of new connections


class EchoBackend:
    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tls_config(port: int, backend: int, cert: dict[str, str], listener: str = "") -> str:
    return f"""
worker_count = 1

[[listeners]]
protocol = "https"
address = "127.0.0.1:{port}"
{listener}

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{backend}", backend_id = "echo" }}]

[[clusters.app.frontends]]
address = "127.0.0.1:{port}"
hostname = "example.com"
certificate = "{cert["certificate"]}"
key = "{cert["key"]}"
"""


class RawH2:
    """An h2 (python-hyper) client over TLS, frame by frame: for what httpx never sends."""

    def __init__(self, port: int, context: ssl.SSLContext, host: str = "example.com") -> None:
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.host = host
        self.received = bytearray()  # every byte the server sent, for `frames()`
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str = "/", end: bool = True, host: str | None = None) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", (host or self.host).encode()),
            (b":path", path.encode()),
        ]
        self.conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()
        return stream_id

    def events(self, until: type, timeout: float = 5.0) -> list[Any]:
        """Read until an event of type `until` (or the connection ends)."""
        self.sock.settimeout(timeout)
        found: list[Any] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError, ssl.SSLError):
                return found
            if not data:
                return found
            self.received += data
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:  # frames after a GOAWAY it already took
                return found
            with contextlib.suppress(ssl.SSLError, OSError):  # it closed after a GOAWAY
                self.flush()
            found.extend(events)
            if any(isinstance(event, until) for event in events):
                return found

    def frames(self) -> list[Any]:
        """Every frame the server sent so far (hyperframe), even those h2 refused to take."""
        found = []
        data = memoryview(bytes(self.received))
        at = 0
        while at + 9 <= len(data):
            frame, length = Frame.parse_frame_header(data[at : at + 9])
            if at + 9 + length > len(data):
                break
            frame.parse_body(data[at + 9 : at + 9 + length])
            found.append(frame)
            at += 9 + length
        return found

    def read_until_closed(self, timeout: float = 10.0) -> None:
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError, ssl.SSLError, OSError):
                return
            if not data:
                return
            self.received += data

    def close(self) -> None:
        self.sock.close()


__all__ = ["EchoBackend", "RawH2", "h2", "pattern", "tls_config"]
