"""Network namespaces for the tests the loopback cannot do: a backend address that is really
black-holed (a connect that times out, not one that is refused).

`backend_namespace()` makes, with pyroute2, a network namespace joined to this one by a veth
pair: `host_address` on our side, `address` on the namespace's (a /24 of 10.x.y.0 that no route
of this machine uses yet). pysozu runs here, in the root namespace, and reaches `address`
through the veth. `run(argv)` starts a process inside the namespace (`ip netns exec`, so it is
our child and is stopped like any other); `blackhole()` adds, inside the namespace, a blackhole
route to `host_address`: the namespace still receives our SYNs but its replies are dropped, so
connects to `address` hang until the caller's timeout, as with a dead host behind a firewall.
`restore()` removes that route. Everything (processes, veth, namespace) is removed on exit,
whatever happened.

Namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); scripts/test runs as root in CI. When
one cannot be made, the test fails saying why: a skip would hide that nothing was tested.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

_counter = 0


@dataclass
class Namespace:
    name: str
    veth: str  # our end of the veth pair
    host_address: str  # on our end
    address: str  # on the namespace's end
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, argv: Sequence[str], log: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """Start `argv` inside the namespace (our child process; stopped on exit)."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def wait_for_port(self, port: int, timeout: float = 10.0) -> None:
        """Until something accepts connections on `address:port` (seen from here)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.address, port), 0.5):
                return
            time.sleep(0.05)
        raise TimeoutError(f"nothing listens on {self.address}:{port} after {timeout} s")

    def blackhole(self) -> None:
        """Drop every packet the namespace sends back to us (connects hang)."""
        self._route("add")

    def restore(self) -> None:
        self._route("del")

    def _route(self, command: str) -> None:
        from pyroute2 import NetNS

        with NetNS(self.name) as ns:
            ns.route(command, dst=f"{self.host_address}/32", type="blackhole")


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that overlaps no address or route of this machine."""
    from pyroute2 import IPRoute

    with IPRoute() as ip:
        used = [
            ipaddress.ip_network(f"{r.get('dst') or '0.0.0.0'}/{r['dst_len']}", strict=False)
            for r in ip.get_routes(family=socket.AF_INET)
            if r["dst_len"] > 0
        ]
    for _ in range(200):
        subnet = ipaddress.ip_network(
            f"10.{random.randrange(200, 250)}.{random.randrange(256)}.0/24"
        )
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet for a test namespace")


@contextlib.contextmanager
def backend_namespace() -> Iterator[Namespace]:
    """A namespace joined to ours by a veth pair; see the module docstring."""
    global _counter
    _counter += 1
    tag = f"pz{os.getpid() % 100000}n{_counter}"  # interface names: 15 bytes at most
    try:
        from pyroute2 import IPRoute, NetNS, netns
    except ImportError as error:  # pragma: no cover - a broken test environment
        pytest.fail(f"pyroute2 is missing (pyproject's test extras install it): {error}")
    subnet = _free_subnet()
    host, inside = str(subnet[1]), str(subnet[2])
    namespace = Namespace(name=tag, veth=f"{tag}a", host_address=host, address=inside)
    try:
        netns.create(tag)
        with IPRoute() as ip:
            ip.link(
                "add", ifname=f"{tag}a", kind="veth", peer={"ifname": f"{tag}b", "net_ns_fd": tag}
            )
            (index,) = ip.link_lookup(ifname=f"{tag}a")
            ip.addr("add", index=index, address=host, prefixlen=24)
            ip.link("set", index=index, state="up")
        with NetNS(tag) as ns:
            (index,) = ns.link_lookup(ifname=f"{tag}b")
            ns.addr("add", index=index, address=inside, prefixlen=24)
            ns.link("set", index=index, state="up")
            (loopback,) = ns.link_lookup(ifname="lo")
            ns.link("set", index=loopback, state="up")
    except Exception as error:
        _remove(namespace)
        pytest.fail(
            f"cannot build the test network namespace {tag} ({type(error).__name__}: {error}). "
            "These tests need root with CAP_NET_ADMIN and CAP_SYS_ADMIN, as scripts/test runs "
            "in CI; they do not skip, since a black-holed backend cannot be had otherwise."
        )
    try:
        yield namespace
    finally:
        _remove(namespace)


def _remove(namespace: Namespace) -> None:
    """Stop the namespace's processes, delete the veth pair and the namespace."""
    from pyroute2 import IPRoute, netns

    for process in namespace.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    with contextlib.suppress(Exception), IPRoute() as ip:
        for index in ip.link_lookup(ifname=namespace.veth):
            ip.link("del", index=index)  # deletes both ends
    with contextlib.suppress(Exception):
        netns.remove(namespace.name)
    deadline = time.monotonic() + 5
    while Path(f"/sys/class/net/{namespace.veth}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
