"""Clients with real, distinct source addresses: sockets opened inside a network namespace.

`client_namespace(count)` builds on netns_support.backend_namespace (a namespace joined to ours
by a veth pair, removed on exit) and gives the namespace's end `count` addresses of its /24
(10.x.y.2, .3, ...). pysozu and the backends run here, in the root namespace, and listen on
0.0.0.0 (or the veth's `host_address`); a client `connect`s from one of the addresses, so the
peer pysozu accepts is that address, not 127.0.0.1: per-IP limits, access rules, forwarding
headers and source hashing see clients that really differ.

Sockets are created in the namespace by a short-lived thread that enters it (setns(2) moves
only the calling thread); a socket stays in the namespace it was made in, so this process then
uses it like any other. Needs root, as netns_support does; failures fail, they do not skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from netns_support import Namespace, backend_namespace

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Clients:
    namespace: Namespace
    addresses: list[str]  # the namespace's own addresses, one per "client host"

    @property
    def proxy_address(self) -> str:
        """Our end of the veth: where the clients reach pysozu."""
        return self.namespace.host_address

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A new IPv4 socket in the namespace."""
        made: list[socket.socket] = []
        failed: list[BaseException] = []

        def enter_and_make() -> None:
            try:
                fd = os.open(f"/var/run/netns/{self.namespace.name}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, f"setns: {os.strerror(errno)}")
                finally:
                    os.close(fd)
                made.append(socket.socket(socket.AF_INET, kind))
            except BaseException as error:  # handed to the caller's thread
                failed.append(error)

        thread = threading.Thread(target=enter_and_make)
        thread.start()
        thread.join()
        if failed:
            raise failed[0]
        return made[0]

    def connect(self, source: str, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection from `source` (one of `addresses`) to pysozu's `port`."""
        sock = self.socket()
        sock.settimeout(timeout)
        try:
            sock.bind((source, 0))
            sock.connect((self.proxy_address, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def udp(self, source: str, timeout: float = 2.0) -> socket.socket:
        sock = self.socket(socket.SOCK_DGRAM)
        sock.settimeout(timeout)
        sock.bind((source, 0))
        return sock


@contextlib.contextmanager
def client_namespace(count: int = 2) -> Iterator[Clients]:
    """A namespace whose veth end has `count` addresses (see the module docstring)."""
    from pyroute2 import NetNS

    with backend_namespace() as namespace:
        first = ipaddress.ip_address(namespace.address)
        addresses = [str(first + n) for n in range(count)]
        with NetNS(namespace.name) as ns:
            (index,) = ns.link_lookup(ifname=f"{namespace.name}b")
            for address in addresses[1:]:
                ns.addr("add", index=index, address=address, prefixlen=24)
        yield Clients(namespace, addresses)


def http_exchange(sock: socket.socket, host: str, path: str = "/", extra: str = "") -> bytes:
    """Send one GET on `sock` and return the whole response (the proxy or backend closes or
    says its length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
