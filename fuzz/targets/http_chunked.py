"""Chunked bodies (http1/body.ChunkedBody): chunk-size lines, extensions, data, trailers.

The input (after a control byte that picks a read size) is what follows a chunked head. It is
framed twice: whole, and in reads placed at an offset inside a larger buffer (the worker's
buffers hold other bytes before and after, and `feed` gets `start` and `end`).

Expected answer to bad input: `HttpSyntaxError` (the connection is closed). Anything else
raised is a crash. Properties checked (an AssertionError is a finding too): `feed` takes no
more than it is given, and how the reads are split changes nothing: the same bytes belong to
the body, it ends at the same place, or it is refused either way.
"""

from __future__ import annotations

import mmap

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.body import ChunkedBody

DICTIONARY = (
    b"\r\n",
    b"0\r\n\r\n",
    b";ext=1",
    b"ffffffffffffff",
    b"X-Checksum: ",
    b"Content-Length: ",
    b"Trailer: ",
)
PAD = 7  # bytes of another message before the body in the buffer


def frame(data: bytes, size: int) -> tuple[int, bool]:
    """Bytes taken and whether the body ended; -1 if refused."""
    body = ChunkedBody()
    buffer = mmap.mmap(-1, PAD + len(data) + PAD)  # like the worker's buffers
    buffer[: PAD + len(data)] = b"x" * PAD + data
    taken = 0
    start = end = PAD
    try:
        while not body.done and end < PAD + len(data):
            end = min(end + size, PAD + len(data))
            count = body.feed(buffer, start, end)
            assert 0 <= count <= end - start, (count, start, end)
            taken += count
            start += count
    except HttpSyntaxError:
        return -1, False
    finally:
        buffer.close()
    return taken, body.done


def one_input(data: bytes) -> None:
    if not data:
        return
    size, stream = data[0] % 64 + 1, data[1:]
    whole = frame(stream, len(stream) or 1)
    split = frame(stream, size)
    assert whole == split, (whole, split)
