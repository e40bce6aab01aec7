"""A hand-built HTTP/2 client for black-box tests: frames as bytes, no protocol checks.

`Wire` opens a TLS (ALPN h2) or h2c connection to pysozu, sends the preface and a SETTINGS,
and then sends whatever frames a test builds with `frame()` and `block()`, malformed ones
included (h2 refuses to send those). Reading parses the raw frame headers only, acknowledges
the server's SETTINGS, and decodes response header blocks with a separate HPACK decoder.

    wire = Wire(port, context)
    wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(request_fields("/"))))
    status, fields, body = wire.response(1)
    assert wire.goaway() == (last_stream_id, error_code)   # or None: closed without one
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import NamedTuple

from hpack import Decoder, Encoder

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION, PRIORITY_UPDATE = 6, 7, 8, 9, 0x10
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT = 0, 1, 3, 4
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL = 5, 6, 7, 8
COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 9, 11
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Frame(NamedTuple):
    kind: int
    flags: int
    stream: int
    payload: bytes


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One frame's bytes; `stream` may carry the reserved bit (it is sent as given)."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def settings(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(">HI", key, value) for key, value in pairs)


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))


def rst_stream(stream: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def request_fields(
    path: str = "/", method: str = "GET", host: str = "example.com", scheme: str = "https"
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method.encode()),
        (b":scheme", scheme.encode()),
        (b":authority", host.encode()),
        (b":path", path.encode()),
    ]


def block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """An HPACK block of `fields` as given (no lower-casing, no checks), no indexing state."""
    encoder = Encoder()  # a fresh table per block: blocks may be sent or dropped in any order
    encoder.header_table_size = 0
    return bytes(encoder.encode(fields, huffman=False))


class Wire:
    def __init__(
        self,
        port: int,
        context: ssl.SSLContext | None = None,
        host: str = "example.com",
        client_settings: bytes = b"",
        preface: bytes = PREFACE,
        before: bytes = b"",
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if before:  # a PROXY protocol header, say
            raw.sendall(before)
        if context is not None:
            context.set_alpn_protocols(["h2"])
            self.sock: socket.socket = context.wrap_socket(raw, server_hostname=host)
            assert isinstance(self.sock, ssl.SSLSocket)
            assert self.sock.selected_alpn_protocol() == "h2"
        else:
            self.sock = raw
        self.decoder = Decoder()
        self.received: list[Frame] = []
        self.heads: dict[int, list[tuple[bytes, bytes]]] = {}  # decoded as they came
        self.closed = False
        self._buffer = b""
        # Our table size 0 first, so the encoder's "size update to 0" is always allowed.
        self.send(preface + frame(SETTINGS, 0, 0, client_settings))

    def send(self, *frames: bytes) -> bool:
        """Send; False if the server already closed (a GOAWAY may be waiting to be read)."""
        try:
            self.sock.sendall(b"".join(frames))
        except (OSError, ssl.SSLError):
            return False
        return True

    def _read(self, timeout: float) -> bool:
        """Read once; False when nothing came in `timeout` or the connection closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return False
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        self._buffer += data
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            kind, flags = self._buffer[3], self._buffer[4]
            stream = int.from_bytes(self._buffer[5:9], "big") & 0x7FFF_FFFF
            got = Frame(kind, flags, stream, self._buffer[9 : 9 + length])
            self._buffer = self._buffer[9 + length :]
            self.received.append(got)
            if kind == HEADERS:
                fields = self.decoder.decode(_unpad(got), raw=True)
                self.heads.setdefault(got.stream, []).extend(
                    (bytes(n), bytes(v)) for n, v in fields
                )
            if kind == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
        return True

    def wait(self, test: Callable[[Frame], bool], timeout: float = 5.0) -> Frame | None:
        """The first received frame passing `test` (read more until one comes or time is up)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for got in self.received[seen:]:
                if test(got):
                    return got
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0 or (
                not self._read(left) and (self.closed or time.monotonic() >= deadline)
            ):
                if self.closed:
                    for got in self.received[seen:]:
                        if test(got):
                            return got
                return None

    def goaway(self, timeout: float = 5.0) -> tuple[int, int] | None:
        """(last stream id, error code) of the server's GOAWAY with an error, else its last one."""
        got = self.wait(lambda f: f.kind == GOAWAY and f.payload[4:8] != b"\0\0\0\0", timeout)
        goaways = [f for f in self.received if f.kind == GOAWAY]
        if got is None and not goaways:
            return None
        last = (got or goaways[-1]).payload
        return int.from_bytes(last[:4], "big") & 0x7FFF_FFFF, int.from_bytes(last[4:8], "big")

    def reset_code(self, stream: int, timeout: float = 5.0) -> int | None:
        got = self.wait(lambda f: f.kind == RST_STREAM and f.stream == stream, timeout)
        return None if got is None else int.from_bytes(got.payload, "big")

    def response(self, stream: int, timeout: float = 10.0) -> tuple[int, dict[bytes, bytes], bytes]:
        """The status, fields (last value wins) and body of `stream`, read until END_STREAM."""

        def ended(f: Frame) -> bool:
            return f.stream == stream and (
                f.kind == RST_STREAM or (f.kind in (DATA, HEADERS) and bool(f.flags & END_STREAM))
            )

        assert self.wait(ended, timeout) is not None, (
            f"stream {stream} did not end: {self.received}"
        )
        fields: dict[bytes, bytes] = {}
        body = b""
        for got in self.received:
            if got.stream != stream:
                continue
            if got.kind == RST_STREAM:
                raise AssertionError(f"stream {stream} reset: {int.from_bytes(got.payload, 'big')}")
            if got.kind == DATA:
                body += _unpad(got)
        fields.update(self.heads.pop(stream, []))
        self.received = [f for f in self.received if f.stream != stream]
        return int(fields[b":status"]), fields, body

    def alive(self) -> bool:
        """The connection still answers a PING."""
        if not self.send(frame(PING, 0, 0, b"alive?!!")):
            return False
        return (
            self.wait(lambda f: f.kind == PING and f.payload == b"alive?!!" and bool(f.flags & ACK))
            is not None
        )

    def close(self) -> None:
        self.sock.close()


def _unpad(got: Frame) -> bytes:
    payload = got.payload
    if got.flags & PADDED:
        payload = payload[1 : len(payload) - payload[0]]
    if got.kind == HEADERS and got.flags & PRIORITY_FLAG:
        payload = payload[5:]
    return payload
