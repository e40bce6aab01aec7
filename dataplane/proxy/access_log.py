"""Access logs: one line per request, in sozu's ASCII layout or as JSON lines, never blocking.

`AccessLog.log(record)` formats the line and queues it; `flush()` (once per loop turn) writes
what the target takes. A target that is full keeps the rest queued, and the log asks the loop to
wait for room through the `watch(fd, on_writable)` / `unwatch(fd)` callables it was given (it
unwatches a descriptor before closing it). The queue is bounded: a line that does not fit is
dropped and counted (`dropped`). A broken socket target is reconnected at most once a second;
`reopen()` (SIGUSR1) reopens files for logrotate.

ASCII, as sozu 2.1 writes it (`INFO-ACCESS `, or `ERROR-ACCESS` for a failed request):

    <time> <unix ns> <pid> <level> <tag>\t[<session> <request> <cluster> <backend>] <client>
    <backend address> <request time>/<service time>/<response time>/-/- <bytes in> <bytes out>
    [<tags>, user-agent=<ua>] None <protocol> <authority> <method> <path> <status>[ | message]

(one line; `-` for a missing value; `None` is sozu's empty OpenTelemetry context.)
JSON: one object per line, the `AccessRecord` fields plus `time`, `tag` and `pid`; durations in
seconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import msgspec

from dataplane.command.messages import AccessLogFormat
from dataplane.proxy.access_log_targets import AccessLogTargetError, Target

DEFAULT_MAX_QUEUED_BYTES = 1 << 20
_WRITE_CHUNK = 1 << 16  # bytes gathered into one write on stream targets
_RECONNECT_DELAY = 1.0


class AccessRecord(msgspec.Struct, kw_only=True, rename={"authority": "host"}):
    """What the session knows when a request ends (times in seconds, monotonic differences)."""

    session_id: str
    request_id: str | None = None
    cluster_id: str | None = None
    backend_id: str | None = None
    client_address: str | None = None
    backend_address: str | None = None
    protocol: str = "HTTP"
    method: str | None = None
    authority: str | None = None
    path: str | None = None
    status: int | None = None
    request_time: float = 0.0  # first request byte to last response byte
    service_time: float = 0.0  # spent in the proxy itself
    response_time: float | None = None  # backend connection to last response byte
    bytes_in: int = 0
    bytes_out: int = 0
    user_agent: str | None = None
    tags: dict[str, str] | None = None
    message: str | None = None  # client_timeout, backend_timeout, ...
    error: bool = False


def _duration(seconds: float | None) -> str:
    """sozu's LogDuration: `12s`, `250ms`, `40μs`, `900ns`."""
    if seconds is None:
        return "-"
    nanos = int(seconds * 1e9)
    if nanos >= 10_000_000_000:
        return "%ds" % (nanos // 1_000_000_000)  # noqa: UP031 (% is the fastest here)
    if nanos >= 10_000_000:
        return "%dms" % (nanos // 1_000_000)  # noqa: UP031
    if nanos >= 10_000:
        return "%dμs" % (nanos // 1_000)  # noqa: UP031
    return "%dns" % nanos  # noqa: UP031


def duration(seconds: float | None) -> bytes:
    return _duration(seconds).encode()


# One %-format for the whole line: a third cheaper than joining f-strings and bytes.
# `scope` is "<cluster> <backend>", `what` is "[<tags>] None <protocol> <host> <method> <path>":
# both stay the same for every request of a keep-alive connection, so callers may cache them.
_ASCII_LINE = "%s %d %d %s %s\t[%s %s %s] %s %s %s/%s/%s/-/- %d %d %s %s%s"


def ascii_scope(cluster_id: str | None, backend_id: str | None) -> str:
    return f"{cluster_id or '-'} {backend_id or '-'}"


def ascii_what(
    tags: dict[str, str] | None,
    user_agent: str | None,
    protocol: str,
    authority: str | None,
    method: str | None,
    path: str | None,
) -> str:
    parts = [f"{k}={v}" for k, v in sorted(tags.items())] if tags else []
    if user_agent is not None:
        agent = user_agent.replace(" ", "_").replace("[", "{").replace("]", "}")
        parts.append(f"user-agent={agent}")
    return f"[{', '.join(parts)}] None {protocol} {authority or '-'} {method or '-'} {path or '-'}"


class Formatter:
    """Turns records into lines; the clock is read once per line, its date part once a second."""

    def __init__(
        self,
        log_format: AccessLogFormat,
        tag: str,
        pid: int,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if log_format not in (AccessLogFormat.ASCII, AccessLogFormat.JSON):
            raise AccessLogTargetError(f"access log format {log_format.name} is not supported")
        self.ascii = log_format == AccessLogFormat.ASCII
        self.format = self._ascii if self.ascii else self._json
        self.tag = tag
        self.pid = pid
        self.clock = clock
        self._second = -1
        self._date = ""
        self._encode = msgspec.json.Encoder().encode
        self._json_prefix = f'","tag":{msgspec.json.encode(tag).decode()},"pid":{pid},'.encode()

    def _timestamp(self, nanos: int) -> str:
        second, rest = divmod(nanos, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return "%s.%06dZ" % (self._date, rest // 1000)  # noqa: UP031 (faster than f"{:06d}")

    def _ascii(self, r: AccessRecord) -> bytes:
        return self.ascii_line(
            r.error,
            r.session_id,
            r.request_id,
            ascii_scope(r.cluster_id, r.backend_id),
            r.client_address,
            r.backend_address,
            r.request_time,
            r.service_time,
            r.response_time,
            r.bytes_in,
            r.bytes_out,
            ascii_what(r.tags, r.user_agent, r.protocol, r.authority, r.method, r.path),
            r.status,
            r.message,
        )

    def ascii_line(
        self,
        error: bool,
        session_id: str,
        request_id: str | None,
        scope: str,
        client_address: str | None,
        backend_address: str | None,
        request_time: float,
        service_time: float,
        response_time: float | None,
        bytes_in: int,
        bytes_out: int,
        what: str,
        status: int | None,
        message: str | None,
    ) -> bytes:
        """The ASCII line from its parts (the worker calls it directly, without a record)."""
        nanos = self.clock()
        line = (
            _ASCII_LINE
            % (
                self._timestamp(nanos),
                nanos,
                self.pid,
                "ERROR-ACCESS" if error else "INFO-ACCESS ",
                self.tag,
                session_id,
                request_id or "-",
                scope,
                client_address or "-",
                backend_address or "-",
                _duration(request_time),
                _duration(service_time),
                _duration(response_time),
                bytes_in,
                bytes_out,
                what,
                "-" if status is None else status,
                "" if message is None else " | " + message,
            )
        ).encode("utf-8", "replace")
        if 10 in line or 13 in line:  # one request, one line (int `in` is a memchr)
            line = line.replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return line + b"\n"

    def _json(self, record: AccessRecord) -> bytes:
        body = self._encode(record)
        stamp = self._timestamp(self.clock()).encode()
        return b'{"time":"' + stamp + self._json_prefix + body[1:] + b"\n"


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
        self.queue: deque[bytes] = deque()
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
        """Queue a formatted line (dropped and counted if the queue is full)."""
        if self.queued_bytes + len(line) > self.max_queued_bytes:
            self.dropped += 1
            return
        self.queue.append(line)
        self.queued_bytes += len(line)

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
