"""Length-prefixed JSON frames over a unix stream socket.

A frame is an 8-byte little-endian length that counts itself, then a JSON body (sozu's framing,
with JSON where sozu has protobuf). The receive buffer starts at `buffer_size` and grows up to
`max_buffer_size`; a frame announcing more than that is refused. Hostile input never raises out
of `receive()` except `ChannelClosed` / `FrameTooLarge`, after which the owner closes the channel:

- a length below 8 consumes the prefix and yields a `FrameError` (the channel stays usable);
- a body that is not JSON, or not the expected message, yields a `FrameError` for that frame;
- a length above `max_buffer_size` raises `FrameTooLarge` (the stream cannot be resynchronised).

The same class serves blocking use (CLI, worker boot) and non-blocking use in a selector loop.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from typing import Any, Generic, TypeVar

from dataplane.command import codec

Rx = TypeVar("Rx")

PREFIX = struct.Struct("<Q")
PREFIX_SIZE = PREFIX.size
DEFAULT_BUFFER_SIZE = 1_000_000
DEFAULT_MAX_BUFFER_SIZE = 2_000_000


class ChannelError(Exception):
    """The channel cannot be used any more."""


class ChannelClosed(ChannelError):
    """The peer closed the connection."""


class FrameTooLarge(ChannelError):
    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes is above the limit of {limit} bytes")
        self.length = length
        self.limit = limit


class ChannelTimeout(ChannelError):
    """No whole frame arrived in time (blocking use)."""


class FrameError:
    """One bad frame: reported to the caller, the channel stays usable."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"FrameError({self.reason!r})"


def frame(message: Any) -> bytes:
    body = codec.encode(message)
    return PREFIX.pack(PREFIX_SIZE + len(body)) + body


class Channel(Generic[Rx]):
    """Frames of `Rx` in, any message out, over one socket."""

    def __init__(
        self,
        sock: socket.socket,
        receive_type: type[Rx],
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        self.sock = sock
        self.receive_type = receive_type
        self.max_buffer_size = max(max_buffer_size, buffer_size, PREFIX_SIZE)
        self._read_size = max(min(buffer_size, self.max_buffer_size), 4096)
        self._inbox = bytearray()
        self._outbox = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: Any) -> None:
        """Queue a message; in blocking mode it is written now, else call `flush()`."""
        data = frame(message)
        if len(data) > self.max_buffer_size:
            raise FrameTooLarge(len(data), self.max_buffer_size)
        self._outbox += data
        if self.sock.getblocking():
            self.flush()

    def flush(self) -> bool:
        """Write what the socket accepts; True when nothing is left to write."""
        while self._outbox:
            try:
                sent = self.sock.send(self._outbox)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as error:
                if error.errno in (errno.EPIPE, errno.ECONNRESET):
                    raise ChannelClosed(str(error)) from None
                raise ChannelError(str(error)) from None
            del self._outbox[:sent]
        return True

    @property
    def wants_write(self) -> bool:
        return bool(self._outbox)

    # -- receiving ----------------------------------------------------------------------------

    def receive(self) -> list[Rx | FrameError]:
        """Read what is available (non-blocking) and return every whole frame in it."""
        while True:
            try:
                chunk = self.sock.recv(self._read_size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                raise ChannelClosed(str(error)) from None
            if not chunk:
                messages = self._parse()
                if messages:
                    return messages
                raise ChannelClosed("peer closed the channel")
            self._inbox += chunk
            if self.sock.getblocking() or len(chunk) < self._read_size:
                break
        return self._parse()

    def receive_one(self, timeout: float | None = None) -> Rx | FrameError:
        """Blocking: wait for the next frame (used by the CLI and at worker boot)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            messages = self._parse(limit=1)
            if messages:
                return messages[0]
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ChannelTimeout("no answer in time")
                self.sock.settimeout(remaining)
            else:
                self.sock.settimeout(None)
            try:
                chunk = self.sock.recv(self._read_size)
            except TimeoutError:
                raise ChannelTimeout("no answer in time") from None
            except OSError as error:
                raise ChannelClosed(str(error)) from None
            if not chunk:
                raise ChannelClosed("peer closed the channel")
            self._inbox += chunk

    def _parse(self, limit: int | None = None) -> list[Rx | FrameError]:
        out: list[Rx | FrameError] = []
        inbox = self._inbox
        while len(inbox) >= PREFIX_SIZE and (limit is None or len(out) < limit):
            (length,) = PREFIX.unpack_from(inbox)
            if length < PREFIX_SIZE:
                del inbox[:PREFIX_SIZE]
                out.append(FrameError(f"frame length {length} is below the 8-byte prefix"))
                continue
            if length > self.max_buffer_size:
                raise FrameTooLarge(length, self.max_buffer_size)
            if len(inbox) < length:
                break
            body = bytes(inbox[PREFIX_SIZE:length])
            del inbox[:length]
            try:
                out.append(codec.decode(body, self.receive_type))
            except codec.DecodeError as error:
                out.append(FrameError(f"invalid message: {error}"))
        return out

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not make a whole frame yet (a frame being sent)."""
        return len(self._inbox)

    @property
    def has_buffered_frame(self) -> bool:
        if len(self._inbox) < PREFIX_SIZE:
            return False
        length: int = PREFIX.unpack_from(self._inbox)[0]
        return length < PREFIX_SIZE or len(self._inbox) >= length
