"""A bounded HTTP/1.1 load generator for lifecycle tests: what did clients see while we acted?

`Load(port, host).run(seconds)` starts `keep_alive` clients (one connection each, reused) and
`new_connection` clients (a fresh connection per request), GETs as fast as they are answered
for `seconds`, and counts every outcome:

- answered: a complete 200 response;
- failed: any other status, a truncated response, or a fresh connection closed without answer;
- refused: connect() refused (nobody listening: must never happen while main holds the socket);
- reset: a connection reset by the proxy while a request was on it (fresh connections, or a
  reused one after part of the answer arrived);
- idle_closed: a kept-alive connection found closed between two requests (a draining worker
  closes its idle connections: the client reconnects, as every HTTP client does);
- retried: a reused connection closed before any byte of the answer. HTTP/1.1 cannot tell a
  request that raced the server's close of an idle connection from one that was lost; clients
  retry such idempotent requests on a new connection (RFC 9112 9.3.1), and so do we, once.

Threads, not processes: each client is a blocking loop; everything is bounded in time.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TIMEOUT = 5.0
MAX_HEAD = 65536


@dataclass
class Counts:
    answered: int = 0
    failed: int = 0
    refused: int = 0
    reset: int = 0
    idle_closed: int = 0
    retried: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, detail: str = "") -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if detail and len(self.errors) < 20:
                self.errors.append(f"{outcome}: {detail}")

    def summary(self) -> str:
        return (
            f"answered={self.answered} failed={self.failed} refused={self.refused} "
            f"reset={self.reset} idle_closed={self.idle_closed} retried={self.retried}"
        )


class NoAnswer(Exception):
    """The connection closed (or was reset) before any byte of the answer."""


class BadAnswer(Exception):
    """The answer started but was not a complete 200."""


class Load:
    def __init__(
        self, port: int, host: str, keep_alive: int = 50, new_connection: int = 20
    ) -> None:
        self.port = port
        self.request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        self.keep_alive = keep_alive
        self.new_connection = new_connection
        self.counts = Counts()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- driving ------------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.keep_alive + self.new_connection):
            target = self._keep_alive_client if n < self.keep_alive else self._fresh_client
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> Counts:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT * 2 + 1)
        return self.counts

    def run(self, seconds: float) -> Counts:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def during(self, action: Callable[[], None], before: float = 1.5, after: float = 3.0) -> Counts:
        """Load for `before` seconds, run `action` (still loading), then `after` seconds more."""
        self.start()
        try:
            time.sleep(before)
            action()
            time.sleep(after)
        finally:
            self.stop()
        print(f"load: {self.counts.summary()}")
        for error in self.counts.errors:
            print(f"  {error}")
        return self.counts

    # -- clients ------------------------------------------------------------------------------

    def _connect(self) -> socket.socket | None:
        try:
            return socket.create_connection(("127.0.0.1", self.port), TIMEOUT)
        except ConnectionRefusedError as error:
            self.counts.add("refused", str(error))
        except OSError as error:
            self.counts.add("failed", f"connect: {error}")
        time.sleep(0.01)
        return None

    def _fresh_client(self) -> None:
        while not self._stop.is_set():
            sock = self._connect()
            if sock is None:
                continue
            with sock:
                self._exchange(sock, reused=False)

    def _keep_alive_client(self) -> None:
        sock: socket.socket | None = None
        while not self._stop.is_set():
            if sock is not None and _closed_by_peer(sock):
                self.counts.add("idle_closed")
                sock.close()
                sock = None
            reused = sock is not None
            if sock is None:
                sock = self._connect()
                if sock is None:
                    continue
            if not self._exchange(sock, reused):
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def _exchange(self, sock: socket.socket, reused: bool) -> bool:
        """One request; True when the connection can be reused."""
        try:
            reusable = _get(sock, self.request)
            self.counts.add("answered")
            return reusable
        except NoAnswer as error:
            if not reused:
                kind = "reset" if "reset" in str(error).lower() else "failed"
                self.counts.add(kind, f"fresh connection: {error}")
                return False
            self.counts.add("retried")
            retry = self._connect()
            if retry is not None:
                with retry:
                    self._exchange(retry, reused=False)
            return False
        except ConnectionResetError as error:
            self.counts.add("reset", str(error))
        except (BadAnswer, OSError) as error:
            self.counts.add("failed", f"{type(error).__name__}: {error}")
        return False


def _closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _get(sock: socket.socket, request: bytes) -> bool:
    """Send one GET, read one whole answer; raise NoAnswer / BadAnswer / OSError."""
    try:
        sock.sendall(request)
        first = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError) as error:
        raise NoAnswer(str(error)) from None
    if not first:
        raise NoAnswer("closed")
    data = first
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise BadAnswer("head too large")
        more = sock.recv(65536)
        if not more:
            raise BadAnswer("closed in the head")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"200":
        raise BadAnswer(lines[0].decode(errors="replace"))
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            raise BadAnswer("closed in the body")
        body += more
    return not close
