"""The access log's queue: lines in, writes out, never blocking the loop.

`enqueue(line)` keeps a formatted line (access_log_format.py), `enqueue_batch(lines)` many at
once; `flush()` writes what the target takes. A target that is full keeps the rest queued, and
the log asks the loop to wait for room through the `watch(fd, on_writable)` / `unwatch(fd)`
callables it was given (it unwatches a descriptor before closing it). The queue is bounded: a
line that does not fit is dropped and counted (`dropped`). A broken socket target is reconnected
at most once a second; `reopen()` (SIGUSR1) reopens files for logrotate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from dataplane.command.log_targets import AccessLogTargetError, Target
from dataplane.proxy.observability.access_log_format import AccessRecord, Formatter

DEFAULT_MAX_QUEUED_BYTES = 1 << 20
_WRITE_CHUNK = 1 << 16  # bytes gathered into one write on stream targets
_RECONNECT_DELAY = 1.0


class AccessLog:
    def __init__(
        self,
        target: Target,
        formatter: Formatter,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        clock: Callable[[], float] = time.monotonic,
        watch: Callable[[int, Callable[[int], None]], None] = lambda fd, callback: None,
        unwatch: Callable[[int], None] = lambda fd: None,
    ) -> None:
        self.target = target
        self.formatter = formatter
        self.max_queued_bytes = max_queued_bytes
        self.clock = clock
        self.queue: deque[bytes] = deque()  # lines (or batches of them) waiting for the target
        self.queued_bytes = 0
        self.dropped = 0
        self.blocked = False  # the target said "full" and is pollable
        self.broken_since: float | None = None
        self._watch = watch
        self._unwatch = unwatch
        self._watched = -1  # the descriptor registered for writability, if any

    @property
    def wants_write(self) -> bool:
        return self.blocked and bool(self.queue)

    def fileno(self) -> int:
        return self.target.fileno()

    def log(self, record: AccessRecord) -> None:
        self.enqueue(self.formatter.format(record))

    def enqueue(self, line: bytes) -> None:
        """Keep a formatted line (dropped and counted if the queue is full)."""
        size = self.queued_bytes + len(line)
        if size > self.max_queued_bytes:
            self.dropped += 1
            return
        self.queue.append(line)
        self.queued_bytes = size

    def enqueue_batch(self, lines: list[bytes]) -> None:
        """Keep many lines: one piece for a stream target, one datagram each otherwise."""
        if self.target.datagram or self.queued_bytes + sum(map(len, lines)) > self.max_queued_bytes:
            for line in lines:  # (when the queue is nearly full: as many as fit)
                self.enqueue(line)
            return
        data = b"".join(lines)
        self.queue.append(data)
        self.queued_bytes += len(data)

    def flush(self) -> None:
        """Write what the target takes now; keep the rest for later (never blocks)."""
        if self.queue and (self.broken_since is None or self._reconnect()):
            self._write()
        fd = self.target.fileno() if self.wants_write else -1
        if fd != self._watched:
            self._stop_watching()
            if fd >= 0:
                self._watch(fd, self.on_writable)
                self._watched = fd

    def _write(self) -> None:
        self.blocked = False
        try:
            if self.target.datagram:
                self._send_datagrams()
            else:
                self._write_stream()
        except BlockingIOError:
            self.blocked = self.target.pollable
        except OSError:
            self._broken()

    def on_writable(self, _mask: int = 0) -> None:
        self.flush()

    def reopen(self) -> None:
        self._stop_watching()
        try:
            self.target.reopen()
        except AccessLogTargetError:
            self._broken()
        else:
            self.broken_since = None
            self.blocked = False

    def close(self) -> None:
        self.flush()
        self._stop_watching()
        self.target.close()

    def _stop_watching(self) -> None:
        if self._watched >= 0:
            self._unwatch(self._watched)
            self._watched = -1

    def _send_datagrams(self) -> None:
        queue = self.queue
        while queue:
            line = queue[0]
            try:
                self.target.write(line)
            except BlockingIOError:
                raise
            except OSError as error:
                if isinstance(error, (ConnectionRefusedError, FileNotFoundError)):
                    raise  # nobody listens: reconnect later, keep the lines meanwhile
                self.dropped += 1  # this datagram cannot go (too large, ...): the next may
            queue.popleft()
            self.queued_bytes -= len(line)

    def _write_stream(self) -> None:
        queue = self.queue
        while queue:
            if len(queue) > 1 and len(queue[0]) < _WRITE_CHUNK:
                chunk, size = [], 0
                while queue and size + len(queue[0]) <= _WRITE_CHUNK:
                    size += len(queue[0])
                    chunk.append(queue.popleft())
                queue.appendleft(b"".join(chunk))
            data = queue[0]
            written = self.target.write(data)
            self.queued_bytes -= written
            if written < len(data):
                queue[0] = data[written:]
                raise BlockingIOError
            queue.popleft()

    def _broken(self) -> None:
        if self.broken_since is None:
            self.broken_since = self.clock()
        self.blocked = False
        self._stop_watching()

    def _reconnect(self) -> bool:
        assert self.broken_since is not None
        now = self.clock()
        if now - self.broken_since < _RECONNECT_DELAY:
            return False
        self._stop_watching()
        try:
            self.target.reopen()
        except AccessLogTargetError:
            self.broken_since = now
            return False
        self.broken_since = None
        return True
