"""A real h2c (prior knowledge) backend for the HTTP/1.1 client -> HTTP/2 backend tests (h2).

One thread per connection, flow control both ways (received DATA is acknowledged as it is
read, response bodies go out as the windows allow). It counts its connections and keeps the
head of every request. Paths:
- `/big/<n>`: n bytes (`pattern`), with content-length;
- `/stream/<n>`: n bytes without content-length;
- `/trailers/<n>`: n bytes without content-length, then trailers `x-checksum` (sha256 hex);
- `/reset`: RST_STREAM(INTERNAL_ERROR) instead of a response;
- `/reset-late`: a head and a few bytes, then RST_STREAM;
- `/silent`: no answer at all;
- `/goaway`: an echo answer, then GOAWAY and the connection closes;
- `/continue`: a 100 informational head, then the echo answer;
- `/status/<n>`: status n, a short body;
- anything else: a JSON echo (method, path, headers, body length and sha256), with length.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 64
    return (block * (size // len(block) + 1))[:size]


class _Connection:
    def __init__(self, backend: H2cBackend, sock: socket.socket) -> None:
        self.backend = backend
        self.sock = sock
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.heads: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.pending: dict[int, tuple[bytearray, list[tuple[bytes, bytes]] | None]] = {}
        self.closing = False

    def run(self) -> None:
        conn = self.conn
        conn.initiate_connection()
        self._flush()
        try:
            while not self.closing:
                data = self.sock.recv(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    self._event(event)
                self._pump()
                self._flush()
        except (OSError, h2.exceptions.ProtocolError) as error:
            self.backend.errors.append(repr(error))
        finally:
            self.sock.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _event(self, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.heads[event.stream_id] = list(event.headers)
            self.bodies[event.stream_id] = bytearray()  # StreamEnded follows (also at once)
        elif isinstance(event, h2.events.DataReceived):
            self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._answer(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.pending.pop(event.stream_id, None)
            self.backend.resets += 1

    def _answer(self, stream_id: int) -> None:
        conn = self.conn
        head = dict(self.heads.get(stream_id, []))
        body = bytes(self.bodies.pop(stream_id, b""))
        method, path = head[b":method"], head[b":path"].decode()
        self.backend.requests.append((self.heads[stream_id], len(body)))
        if path.startswith(("/big/", "/stream/", "/trailers/")):
            kind, size = path.split("/")[1], int(path.split("/")[2])
            data = pattern(size)
            fields = [(b":status", b"200")]
            if kind == "big":
                fields.append((b"content-length", str(size).encode()))
            if method == b"HEAD":
                conn.send_headers(stream_id, fields, end_stream=True)
                return
            conn.send_headers(stream_id, fields)
            trailers = None
            if kind == "trailers":
                trailers = [(b"x-checksum", hashlib.sha256(data).hexdigest().encode())]
            self.pending[stream_id] = (bytearray(data), trailers)
            return
        if path == "/reset":
            conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        if path == "/reset-late":
            conn.send_headers(stream_id, [(b":status", b"200")])
            conn.send_data(stream_id, b"partial")
            conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        if path == "/silent":
            return
        if path.startswith("/status/"):
            status = path.split("/")[2].encode()
            conn.send_headers(stream_id, [(b":status", status), (b"content-length", b"9")])
            self.pending[stream_id] = (bytearray(b"h2c says\n"), None)
            return
        if path == "/continue":
            conn.send_headers(stream_id, [(b":status", b"100")])
        answer = json.dumps(
            {
                "method": method.decode(),
                "path": path,
                "headers": [[n.decode(), v.decode()] for n, v in self.heads[stream_id]],
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        ).encode()
        fields = [
            (b":status", b"200"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer)).encode()),
        ]
        if method == b"HEAD":
            conn.send_headers(stream_id, fields, end_stream=True)
        else:
            conn.send_headers(stream_id, fields)
            self.pending[stream_id] = (bytearray(answer), None)
        if path == "/goaway":
            self._pump()
            conn.close_connection(last_stream_id=stream_id)
            self._flush()
            self.closing = True

    def _pump(self) -> None:
        conn = self.conn
        for stream_id, (data, trailers) in list(self.pending.items()):
            while data:
                window = conn.local_flow_control_window(stream_id)
                window = min(window, conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece = bytes(data[:window])
                del data[:window]
                conn.send_data(stream_id, piece)
            if data:
                continue
            del self.pending[stream_id]
            if trailers:
                conn.send_headers(stream_id, trailers, end_stream=True)
            else:
                conn.end_stream(stream_id)


class H2cBackend:
    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.resets = 0
        self.errors: list[str] = []  # why connections ended on our side
        self.requests: list[tuple[list[tuple[bytes, bytes]], int]] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=_Connection(self, sock).run, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        self.listener.close()
