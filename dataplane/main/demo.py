"""Tiny keep-alive HTTP backends, so that `pysozu start` with no config answers something.

`pysozu start` without `-c` runs the embedded default config (a listener on 127.0.0.1:8080
routing every host to 127.0.0.1:18081 and :18082) and starts one of these on each backend
address, as child processes stopped with main. Each answers every request with
`hello from demo backend N`. Tests use it too, as a backend that says who it is.

Run alone: `python -m dataplane.main.demo --address 127.0.0.1:18081 --body "hello"`.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Protocol

from dataplane.command.address import SocketAddress

MAX_HEAD = 64 * 1024
DEMO_ADDRESSES = ("127.0.0.1:18081", "127.0.0.1:18082")


def _answer(body: bytes, keep_alive: bool) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _keep_alive(head: bytes) -> bool:
    first, _, rest = head.partition(b"\r\n")
    lowered = rest.lower()
    if first.endswith(b"HTTP/1.0"):
        return b"connection: keep-alive" in lowered
    return b"connection: close" not in lowered


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.closing = False


def serve(address: SocketAddress, body: bytes) -> None:
    listener = socket.create_server(address.sockaddr(), reuse_port=True, backlog=1024)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    running = True

    def stop(_signum: int, _frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while running:
        for key, mask in selector.select(0.5):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    sock, _ = listener.accept()
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ, _Connection(sock))
                continue
            connection: _Connection = key.data
            if not _service(connection, mask, body):
                selector.unregister(connection.sock)
                connection.sock.close()
            else:
                wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.outbox else 0)
                selector.modify(connection.sock, wanted, connection)


def _service(connection: _Connection, mask: int, body: bytes) -> bool:
    """Handle readiness; False when the connection is finished."""
    try:
        if mask & selectors.EVENT_READ:
            data = connection.sock.recv(65536)
            if not data:
                return False
            connection.inbox += data
            while not connection.closing:
                end = connection.inbox.find(b"\r\n\r\n")
                if end < 0:
                    if len(connection.inbox) > MAX_HEAD:
                        return False
                    break
                head = bytes(connection.inbox[:end])
                total = end + 4 + _content_length(head)
                if len(connection.inbox) < total:
                    break
                del connection.inbox[:total]
                keep_alive = _keep_alive(head)
                connection.outbox += _answer(body, keep_alive)
                connection.closing = not keep_alive
        if connection.outbox:
            sent = connection.sock.send(connection.outbox)
            del connection.outbox[:sent]
    except (BlockingIOError, InterruptedError):
        return True
    except (OSError, ValueError):
        return False
    return not (connection.closing and not connection.outbox)


def start_demo_backends(addresses: Sequence[str] = DEMO_ADDRESSES) -> list[subprocess.Popen[bytes]]:
    """One backend process per address, answering `hello from demo backend N`."""
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dataplane.main.demo",
                "--address",
                address,
                "--body",
                f"hello from demo backend {number}\n",
            ],
            process_group=0,
        )
        for number, address in enumerate(addresses, start=1)
    ]


class DemoProcess(Protocol):
    """A demo backend: our child, or one a previous main started (adopted after an upgrade)."""

    @property
    def pid(self) -> int: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


def stop_demo_backends(processes: Sequence[DemoProcess]) -> None:
    for process in processes:
        with contextlib.suppress(OSError):
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a tiny keep-alive HTTP backend")
    parser.add_argument("--address", required=True, help="IP:port to listen on")
    parser.add_argument("--body", required=True, help="the answer to every request")
    args = parser.parse_args(argv)
    try:
        address = SocketAddress.parse(args.address)
        serve(address, args.body.encode())
    except (ValueError, OSError) as error:
        print(f"demo backend {args.address}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
