"""A UDP load generator: request/response datagrams over many flows, as replies per second.

No Debian tool fits: iperf3 needs its own server and a TCP control connection through the
relay, socat forks per datagram, and DNS benchmarks (dnsperf) need a DNS server behind. This one
opens `flows` connected UDP sockets (each a flow for the relay: a distinct source port), keeps
`window` datagrams in flight on each, and sends one more for every reply. A flow that hears
nothing for `stall_s` gets its window sent again (the missing ones count as lost). It prints one
line, `udpload: sent N received M lost L seconds S`, read by `parse`.

Run as `python udpload.py HOST PORT --duration 10 --flows 50 --window 4 --size 64`; one process,
one core, epoll: the ceiling it reaches straight to the backend is quoted as `direct`.
"""

from __future__ import annotations

import argparse
import re
import select
import socket
import sys
import time
from dataclasses import dataclass

_LINE = re.compile(r"^udpload: sent (\d+) received (\d+) lost (\d+) seconds ([0-9.]+)$", re.M)


@dataclass(frozen=True)
class UdpLoad:
    sent: int
    received: int
    lost: int
    seconds: float

    def line(self) -> str:
        return (
            f"udpload: sent {self.sent} received {self.received} lost {self.lost} "
            f"seconds {self.seconds:.3f}"
        )


def parse(text: str) -> UdpLoad | None:
    """The summary line of a run, or None when there is none."""
    match = _LINE.search(text)
    if match is None:
        return None
    return UdpLoad(int(match[1]), int(match[2]), int(match[3]), float(match[4]))


def run(
    host: str,
    port: int,
    *,
    duration_s: float,
    flows: int,
    window: int,
    size: int,
    stall_s: float = 0.2,
) -> UdpLoad:
    payload = b"x" * size
    poller = select.epoll()
    socks: dict[int, socket.socket] = {}
    outstanding: dict[int, int] = {}
    heard: dict[int, float] = {}
    sent = received = lost = 0
    try:
        for _ in range(flows):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((host, port))
            fd = sock.fileno()
            socks[fd] = sock
            poller.register(fd, select.EPOLLIN)
        started = time.monotonic()
        deadline = started + duration_s
        for fd, sock in socks.items():
            sent += _send(sock, payload, window)
            outstanding[fd] = window
            heard[fd] = started
        next_check = started + stall_s
        now = started
        while now < deadline:
            for fd, _ in poller.poll(stall_s):
                sock = socks[fd]
                replies = 0
                while True:
                    try:
                        sock.recv(2048)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    replies += 1
                received += replies
                outstanding[fd] -= replies
                heard[fd] = time.monotonic()
                more = _send(sock, payload, replies)
                sent += more
                outstanding[fd] += more
            now = time.monotonic()
            if now >= next_check:
                next_check = now + stall_s
                for fd, last in heard.items():
                    if now - last > stall_s:
                        lost += max(0, outstanding[fd])
                        outstanding[fd] = _send(socks[fd], payload, window)
                        sent += outstanding[fd]
                        heard[fd] = now
        seconds = time.monotonic() - started
    finally:
        poller.close()
        for sock in socks.values():
            sock.close()
    return UdpLoad(sent, received, lost, seconds)


def _send(sock: socket.socket, payload: bytes, count: int) -> int:
    done = 0
    for _ in range(count):
        try:
            sock.send(payload)
        except (BlockingIOError, ConnectionRefusedError):
            break
        done += 1
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="udpload", description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--flows", type=int, default=50)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.flows < 1 or args.window < 1 or not 0 < args.size <= 65507 or args.duration <= 0:
        parser.error("--flows, --window, --size (up to 65507) and --duration must be positive")
    result = run(
        args.host,
        args.port,
        duration_s=args.duration,
        flows=args.flows,
        window=args.window,
        size=args.size,
    )
    print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
