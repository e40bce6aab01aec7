"""The relay's buffer shapes (LIFECYCLE.md, "Performance notes") keep the protocol's limits.

Backend connections read through buffers larger than `buffer_size` (fewer loop turns per
large body), lent to them only while they serve a session; the limit on a response head is
still `buffer_size`, and bodies stay byte-exact across reused connections.
"""

from __future__ import annotations

import pytest
from http_support import Backend, Client, exchange, get, running_worker

BODY = bytes(range(256)) * 400  # 100 KiB, every byte value, in order


def _big_body(seen: object, conn: object) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY


@pytest.mark.timeout(30)
def test_response_head_larger_than_buffer_size_is_refused() -> None:
    padding = "X-Pad: " + "p" * 30_000 + "\r\n"  # above the default 16 KiB buffer_size
    head = f"HTTP/1.1 200 OK\r\n{padding}Content-Length: 2\r\n\r\nok".encode()
    backend = Backend(lambda seen, conn: head)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        assert exchange(port, get("example.com")).startswith(b"HTTP/1.1 502 ")


@pytest.mark.timeout(30)
def test_large_bodies_are_exact_over_kept_and_pooled_backend_connections() -> None:
    backend = Backend(_big_body)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        for _ in range(3):  # a new client each time: the backend connection comes from the pool
            client = Client(port)
            for _ in range(3):  # keep-alive: the session keeps its backend connection
                status, _head, body = client.roundtrip(get("example.com"))
                assert status == 200
                assert body == BODY
            client.close()
    assert backend.connections == 1
