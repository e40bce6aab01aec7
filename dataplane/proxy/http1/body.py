"""Sans-IO body framing: where does a message body end in a stream of bytes?

The proxy forwards bodies verbatim (chunked stays chunked), so a framer never copies or
decodes payload: `feed(buffer, start, end)` answers how many of the bytes `buffer[start:end]`
belong to the current message, and `done` tells when it is complete. Whatever follows belongs
to the next message (pipelining). Chunk-size lines and trailers are validated strictly; an
error raises HttpSyntaxError and the connection must be closed, never reused.

Trailer fields that RFC 9110 6.5.1 forbids (`FORBIDDEN_TRAILERS`: framing, routing, connection
control, request modifiers, authentication, content format) make the message an error too, in
both directions: rejected, not dropped. Such a field is never sent by a correct peer; it is the
shape of a desynchronisation attempt against a recipient that merges trailers into the header
section, and the codec's rule for those shapes is to refuse, not repair (as with
Content-Length beside Transfer-Encoding). Refusing also keeps bodies zero-copy: dropping a
field would mean sending bytes other than the buffer's, or holding the trailer section back,
for every chunked message. The check runs on whole trailer lines the framer already
assembles, so a message without trailers (`0\r\n\r\n`) pays nothing. The field's line is
refused before it is forwarded whole; a request then gets 400 and its backend connection is
closed, a response is cut short (its head is already on its way) and the client connection
closed.
"""

from __future__ import annotations

import re
from mmap import mmap
from typing import Final

from dataplane.proxy.errors import HttpSyntaxError

Readable = bytes | bytearray | mmap  # what bodies are read from (the worker's buffers are mmaps)

_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?\r\n")
_TRAILER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n")

MAX_LINE: Final = 4096
MAX_TRAILERS: Final = 16384
FORBIDDEN_TRAILERS: Final = frozenset(
    (
        b"content-length",
        b"transfer-encoding",
        b"trailer",
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"upgrade",
        b"expect",
        b"max-forwards",
        b"range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
        b"cache-control",
        b"pragma",
        b"authorization",
        b"proxy-authorization",
        b"www-authenticate",
        b"proxy-authenticate",
        b"content-encoding",
        b"content-type",
        b"content-range",
    )
)


class LengthBody:
    """A body of known length (Content-Length)."""

    __slots__ = ("done", "remaining")

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0

    def feed(self, buffer: Readable, start: int, end: int) -> int:
        taken = min(self.remaining, end - start)
        self.remaining -= taken
        self.done = self.remaining == 0
        return taken


class UntilCloseBody:
    """A response body delimited by the backend closing its connection."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, buffer: Readable, start: int, end: int) -> int:
        return end - start


_SIZE, _DATA, _DATA_END, _TRAILERS = range(4)
Span = tuple[int, int]


class ChunkedBody:
    """A chunked body (RFC 9112 7.1), followed up to the end of its trailer section."""

    __slots__ = (
        "_budget",
        "_limit",
        "_line",
        "_remaining",
        "_state",
        "_trailer_bytes",
        "done",
        "trailers",
    )

    def __init__(self, limit: int = 1 << 62) -> None:
        """`limit`: the most payload bytes allowed (a frontend's max_body_size): past it,
        HttpSyntaxError with status 413, before the chunk that crosses it is forwarded."""
        self._limit = self._budget = limit
        self.done = False
        self._state = _SIZE
        self._remaining = 0
        self._line = bytearray()
        self._trailer_bytes = 0
        self.trailers: list[tuple[bytes, bytes]] | None = None  # kept by `decode` only

    def feed(self, buffer: Readable, start: int, end: int) -> int:
        """How many of these bytes belong to the body (forwarded as they are, framing too)."""
        position = start
        while position < end and not self.done:
            if self._state == _DATA:
                taken = min(self._remaining, end - position)
                self._remaining -= taken
                position += taken
                if self._remaining == 0:
                    self._state = _DATA_END
                continue
            position = self._feed_line(buffer, position, end)
        return position - start

    def decode(self, buffer: Readable, start: int, end: int, payload: list[Span]) -> int:
        """`feed` for a peer that wants the payload without the framing (an HTTP/2 one):
        appends the (start, end) spans of chunk data to `payload`, and keeps the trailer
        fields, lowercased, in `trailers`."""
        if self.trailers is None:
            self.trailers = []
        position = start
        while position < end and not self.done:
            if self._state == _DATA:
                taken = min(self._remaining, end - position)
                payload.append((position, position + taken))
                self._remaining -= taken
                position += taken
                if self._remaining == 0:
                    self._state = _DATA_END
                continue
            position = self._feed_line(buffer, position, end)
        return position - start

    def _feed_line(self, buffer: Readable, position: int, end: int) -> int:
        """Accumulate one CRLF-terminated line; act on it once whole."""
        line = self._line
        newline = buffer.find(b"\n", position, end)
        stop = end if newline < 0 else newline + 1
        line += buffer[position:stop]
        if len(line) > MAX_LINE:
            raise HttpSyntaxError("chunk line too long")
        if newline < 0:
            return stop
        self._line = bytearray()
        if self._state == _DATA_END:
            if line != b"\r\n":
                raise HttpSyntaxError("chunk data not followed by CRLF")
            self._state = _SIZE
        elif self._state == _SIZE:
            match = _SIZE_LINE.fullmatch(line)
            if match is None:
                raise HttpSyntaxError(f"invalid chunk size line {bytes(line[:32])!r}")
            self._remaining = size = int(match.group(1), 16)
            self._budget -= size
            if self._budget < 0:
                raise HttpSyntaxError(f"the limit is {self._limit} bytes", 413)
            self._state = _DATA if size else _TRAILERS
        elif line == b"\r\n":
            self.done = True
        else:
            self._trailer_bytes += len(line)
            if self._trailer_bytes > MAX_TRAILERS or _TRAILER_LINE.fullmatch(line) is None:
                raise HttpSyntaxError("invalid or oversized trailer section")
            colon = line.index(b":")
            name = bytes(line[:colon]).lower()
            if name in FORBIDDEN_TRAILERS:
                raise HttpSyntaxError(f"{name.decode('ascii')} is not allowed in trailers")
            if self.trailers is not None:
                self.trailers.append((name, bytes(line[colon + 1 : -2]).strip(b" \t")))
        return stop


Body = LengthBody | ChunkedBody | UntilCloseBody
