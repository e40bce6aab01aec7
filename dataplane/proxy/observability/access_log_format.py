"""What an access log line says, in sozu's ASCII layout or as a JSON object (protobuf: see
observability/access_log_protobuf.py).

ASCII, as sozu 2.1 writes it (`INFO-ACCESS `, or `ERROR-ACCESS` for a failed request):

    <time> <unix ns> <pid> <level> <tag>\t[<session> <request> <cluster> <backend>] <client>
    <backend address> <request time>/<service time>/<response time>/-/- <bytes in> <bytes out>
    [<tags>, user-agent=<ua>] None <protocol> <authority> <method> <path> <status>[ | message]

(one line; `-` for a missing value; `None` is sozu's empty OpenTelemetry context.)
JSON: one object per line, the `AccessRecord` fields plus `time`, `tag`, `pid`, `service_time`
and `error`; durations in seconds, to the microsecond. In every format the service time is what
the backend's response time leaves of the request time, and a request is a failure (`error`,
`ERROR-ACCESS`) when nothing was sent back or the proxy answered a 5xx itself.

A line is built in three steps, each done as rarely as it can be, because a keep-alive request
must cost the proxy little more than one string format (the issue's budget is 10% of the
requests/s):

- `restamp(nanos)`, once per batch and loop turn: the date and the process, starting each line;
- `fixed(record)`, once per connection and route: session, addresses, cluster, host, path,
  agent (the fields of an `AccessRecord` that a connection's requests share);
- `lines(entries)`, for a batch of requests: request id, durations, bytes, status, message
  (ASCII makes them in one loop, a call per line was a fifth of the cost; the other formats
  make each with `line`).

`format(record)` does the three for one `AccessRecord`, through `lines` as the worker does.

`access_logs_colored` (ASCII only, on a terminal's stdout or stderr, as sozu): the same line with
sozu's ANSI colours: the nanoseconds dim, the pid bold and dim, the level magenta, the tag and
the session context bold, the tags dim, the request bold, and the status green (2xx), blue
(3xx), yellow (4xx) or red (5xx).

Lines are bytes from the start: a `str` holding `μ` takes two bytes per character, and every
part of the line would be widened to it and then encoded again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from dataplane.command.log_targets import AccessLogTargetError
from dataplane.command.messages import AccessLogFormat

if TYPE_CHECKING:
    from dataplane.proxy.observability.request_end import RequestEnd

# The parts of a line that stay the same for every request a connection sends on one route,
# in the order `line` places them between the parts that change (ASCII: before the request id,
# between it and the durations, the rest).
Fixed = tuple[bytes, ...]


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
    response_time: float | None = None  # request start to the backend's response head
    bytes_in: int = 0
    bytes_out: int = 0
    user_agent: str | None = None
    tags: dict[str, str] | None = None
    message: str | None = None  # client_timeout, backend_timeout, ...


def _duration(seconds: float | None) -> str:
    """sozu's LogDuration: `12s`, `250ms`, `40μs`, `900ns`."""
    if seconds is None:
        return "-"
    nanos = int(seconds * 1e9 + 0.5)  # to the nearest: float differences are a hair off
    if nanos >= 10_000_000_000:
        return "%ds" % (nanos // 1_000_000_000)  # noqa: UP031 (% is the fastest here)
    if nanos >= 10_000_000:
        return "%dms" % (nanos // 1_000_000)  # noqa: UP031
    if nanos >= 10_000:
        return "%dμs" % (nanos // 1_000)  # noqa: UP031
    return "%dns" % nanos  # noqa: UP031


def duration(seconds: float | None) -> bytes:
    return _duration(seconds).encode()


_NO_TIME = b"0ns"
_STATUSES = (b"-", *(b"%d" % status for status in range(1, 1000)))  # 0: no response
_STATUS_COLOURS = {2: b"\x1b[32m", 3: b"\x1b[34m", 4: b"\x1b[33m", 5: b"\x1b[31m"}
_COLOURED_STATUSES = tuple(
    _STATUS_COLOURS.get(status // 100, b"") + text for status, text in enumerate(_STATUSES)
)
# ANSI codes sozu puts around the parts of a line: (after the context, before the tags,
# before the request, after the status); none without colours.
_PLAIN = ("", "", "", b"")
_COLOURS = ("\x1b[m", "\x1b[2m", "\x1b[;1m", b"\x1b[m")


def _one_line(text: str) -> bytes:
    """One request, one line, whatever a client put in its path or headers."""
    if "\n" in text or "\r" in text:
        text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text.encode("utf-8", "replace")


class Formatter:
    """The three steps of the module docstring; one subclass per format."""

    def __init__(self, tag: str, pid: int, clock: Callable[[], int] = time.time_ns) -> None:
        self.tag = tag
        self.pid = pid
        self.clock = clock
        # The start of a line (success, failure) without its time, made once by the subclass.
        self._head_formats = self._make_head_formats(tag, pid)
        self.heads = (b"", b"")  # the start of a line at the current stamp
        self._second = -1
        self._date = b""

    def restamp(self, nanos: int | None = None) -> None:
        """The heads at `nanos` (POSIX nanoseconds; default: now)."""
        if nanos is None:
            nanos = self.clock()
        second, rest = divmod(nanos, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        self.heads = self._heads(self._date, rest // 1000, nanos)

    def _make_head_formats(self, tag: str, pid: int) -> tuple[bytes, bytes]:
        """What `_heads` adds the time to: a %-format, or the rest of the head after it."""
        raise NotImplementedError

    def _heads(self, date: bytes, micros: int, nanos: int) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def fixed(self, r: AccessRecord) -> Fixed:
        raise NotImplementedError

    def line(
        self,
        error: bool,
        fixed: Fixed,
        request_id: bytes | None,
        request_time: float,
        service_time: float,
        response_time: float | None,
        bytes_in: int,
        bytes_out: int,
        status: int | None,
        message: str | None,
    ) -> bytes:
        raise NotImplementedError

    def lines(self, ends: list[RequestEnd], offset: int) -> list[bytes]:
        """The lines of a batch of request ends (those with fixed parts: the others are not
        logged); `offset` turns the loop's clock into POSIX nanoseconds. A failed request (no
        status, or a message with a 5xx) is an error; the service time is what the backend's
        response time leaves of the request time. (A format may do all this in one loop,
        without a call per line: ASCII does.)"""
        out = []
        stamped = -1.0
        for (
            now,
            started,
            response_at,
            status,
            message,
            _routed,
            _backend_id,
            bytes_in,
            bytes_out,
            request_id,
            fixed,
        ) in ends:
            if fixed is None:
                continue
            if now != stamped:
                stamped = now
                self.restamp(int(now * 1e9) + offset)
            request_time = now - started
            response_time = None if response_at is None else max(0.0, response_at - started)
            out.append(
                self.line(
                    status == 0 or (message is not None and status >= 500),
                    fixed,
                    request_id or None,
                    request_time,
                    request_time - (response_time or 0.0),
                    response_time,
                    bytes_in,
                    bytes_out,
                    status or None,
                    message or None,
                )
            )
        return out

    def format(self, r: AccessRecord) -> bytes:
        """One line, now, made as the worker makes its batches (`lines`)."""
        request_id = None if r.request_id is None else r.request_id.encode("utf-8", "replace")
        # The request started at 0.0 on the loop's clock and ends now (the offset says so).
        end: RequestEnd = (
            r.request_time,
            0.0,
            r.response_time,
            r.status or 0,
            r.message,
            None,
            r.backend_id,
            r.bytes_in,
            r.bytes_out,
            request_id or b"",
            self.fixed(r),
        )
        return self.lines([end], self.clock() - int(r.request_time * 1e9))[0]


class AsciiFormatter(Formatter):
    _statuses = _STATUSES
    _paint = _PLAIN
    _stamp = b"%s.%06dZ %d"

    def _make_head_formats(self, tag: str, pid: int) -> tuple[bytes, bytes]:
        # The stamp is formatted once, then joined to each level's rest (`_heads`).
        return f" {pid} INFO-ACCESS  {tag}\t[".encode(), f" {pid} ERROR-ACCESS {tag}\t[".encode()

    def _heads(self, date: bytes, micros: int, nanos: int) -> tuple[bytes, bytes]:
        stamp = self._stamp % (date, micros, nanos)
        success, failure = self._head_formats
        return stamp + success, stamp + failure

    def fixed(self, r: AccessRecord) -> Fixed:
        """Two %-templates of this connection's lines, its parts written in: the usual line
        (durations as µs integers) and any other (durations as text); each takes the head,
        request id, the three durations, bytes in and out, status and message."""
        parts = [f"{k}={v}" for k, v in sorted(r.tags.items())] if r.tags else []
        if r.user_agent is not None:
            agent = r.user_agent.replace(" ", "_").replace("[", "{").replace("]", "}")
            parts.append(f"user-agent={agent}")
        context_end, tags_start, request_start, status_end = self._paint
        session = _one_line(f"{r.session_id} ").replace(b"%", b"%%")
        route = _one_line(
            f" {r.cluster_id or '-'} {r.backend_id or '-'}]{context_end} "
            f"{r.client_address or '-'} {r.backend_address or '-'} "
        ).replace(b"%", b"%%")
        request = _one_line(
            f" {tags_start}[{', '.join(parts)}] None {request_start}{r.protocol} "
            f"{r.authority or '-'} {r.method or '-'} {r.path or '-'} "
        ).replace(b"%", b"%%")
        start = b"%s" + session + b"%s" + route
        end = b" %d %d" + request + b"%s" + status_end + b"%s\n"
        return (
            start + b"%d\xce\xbcs/%s/%d\xce\xbcs/-/-" + end,
            start + b"%s/%s/%s/-/-" + end,
        )

    def lines(self, ends: list[RequestEnd], offset: int) -> list[bytes]:
        """Every line of the batch in one loop (a call per line cost a fifth of the whole).
        The usual line (request and response times from 10 µs to 10 ms, a service time of 0
        or more than 10 µs) is one `%`; others go through `_line`, which writes each
        duration as sozu's LogDuration does."""
        out: list[bytes] = []
        append = out.append
        statuses = self._statuses
        stamped = -1.0
        heads = self.heads
        for (
            now,
            started,
            response_at,
            status,
            message,
            _routed,
            _backend_id,
            bytes_in,
            bytes_out,
            request_id,
            fixed,
        ) in ends:
            if fixed is None:
                continue
            if now != stamped:
                stamped = now
                self.restamp(int(now * 1e9) + offset)
                heads = self.heads
            request_time = now - started
            request = int(request_time * 1e9 + 0.5)  # ns, as `duration` rounds them
            if response_at is not None and 10_000 <= request < 10_000_000:
                response_time = response_at - started
                response = int(response_time * 1e9 + 0.5)
                service = int((request_time - response_time) * 1e9 + 0.5)
                if 10_000 <= response < 10_000_000 and (service >= 10_000 or service == 0):
                    append(
                        fixed[0]
                        % (
                            heads[status == 0 or (message is not None and status >= 500)],
                            request_id or b"-",
                            request // 1000,
                            b"%d\xce\xbcs" % (service // 1000) if service else _NO_TIME,
                            response // 1000,
                            bytes_in,
                            bytes_out,
                            statuses[status] if status < 1000 else b"%d" % status,
                            b"" if message is None else b" | " + _one_line(message),
                        )
                    )
                    continue
            append(
                self._line(
                    heads,
                    fixed,
                    request_id,
                    request_time,
                    started,
                    response_at,
                    status,
                    message,
                    bytes_in,
                    bytes_out,
                )
            )
        return out

    def _line(
        self,
        heads: tuple[bytes, bytes],
        fixed: Fixed,
        request_id: bytes,
        request_time: float,
        started: float,
        response_at: float | None,
        status: int,
        message: str | None,
        bytes_in: int,
        bytes_out: int,
    ) -> bytes:
        request = duration(request_time)
        if response_at is None:
            response = b"-"
            service = request
        else:
            response_time = max(0.0, response_at - started)
            response = duration(response_time)
            service_time = request_time - response_time
            service = duration(service_time) if service_time else _NO_TIME
        return fixed[1] % (
            heads[status == 0 or (message is not None and status >= 500)],
            request_id or b"-",
            request,
            service,
            response,
            bytes_in,
            bytes_out,
            self._statuses[status] if status < 1000 else b"%d" % status,
            b"" if message is None else b" | " + _one_line(message),
        )

    def line(
        self,
        error: bool,
        fixed: Fixed,
        request_id: bytes | None,
        request_time: float,
        service_time: float,
        response_time: float | None,
        bytes_in: int,
        bytes_out: int,
        status: int | None,
        message: str | None,
    ) -> bytes:
        """One line outside a batch (a TCP connection's), at the level `error` says."""
        head = self.heads[error]
        return self._line(
            (head, head),
            fixed,
            request_id or b"",
            request_time,
            0.0,
            response_time,
            status or 0,
            message,
            bytes_in,
            bytes_out,
        )


class ColouredAsciiFormatter(AsciiFormatter):
    """The ASCII line with sozu's ANSI colours (`access_logs_colored`)."""

    _statuses = _COLOURED_STATUSES
    _paint = _COLOURS
    _stamp = b"%s.%06dZ \x1b[2m%d"

    def _make_head_formats(self, tag: str, pid: int) -> tuple[bytes, bytes]:
        rest = f" \x1b[;2;1m{pid} \x1b[;35;1m%s \x1b[0;1m{tag}\x1b[m\t\x1b[;1m["
        return (rest % "INFO-ACCESS ").encode(), (rest % "ERROR-ACCESS").encode()


_JSON_LINE = (
    b'%s%s%s%s"request_time":%.6f,"service_time":%.6f,"response_time":%s,'
    b'"bytes_in":%d,"bytes_out":%d,%s"status":%s,"message":%s,"error":%s}\n'
)
_json = msgspec.json.Encoder().encode


def _json_text(value: object) -> str:
    return _json(value).decode()


class JsonFormatter(Formatter):
    def _make_head_formats(self, tag: str, pid: int) -> tuple[bytes, bytes]:
        tag = _json_text(tag).replace("%", "%%")
        head = f'{{"time":"%s.%06dZ","tag":{tag},"pid":{pid},'.encode()
        return head, head

    def _heads(self, date: bytes, micros: int, nanos: int) -> tuple[bytes, bytes]:
        head = self._head_formats[0] % (date, micros)
        return head, head

    def fixed(self, r: AccessRecord) -> Fixed:
        addresses = {
            "cluster_id": r.cluster_id,
            "backend_id": r.backend_id,
            "client_address": r.client_address,
            "backend_address": r.backend_address,
        }
        request = {
            "protocol": r.protocol,
            "method": r.method,
            "host": r.authority,
            "path": r.path,
            "user_agent": r.user_agent,
            "tags": r.tags,
        }
        return (  # members of the line's object: each dict's text without its braces
            b'"session_id":%s,"request_id":' % _json(r.session_id),
            b",%s," % _json(addresses)[1:-1],
            b"%s," % _json(request)[1:-1],
        )

    def line(
        self,
        error: bool,
        fixed: Fixed,
        request_id: bytes | None,
        request_time: float,
        service_time: float,
        response_time: float | None,
        bytes_in: int,
        bytes_out: int,
        status: int | None,
        message: str | None,
    ) -> bytes:
        if request_id is None:
            rid = b"null"
        elif request_id.isalnum():  # the worker's ids (ULIDs): nothing to escape
            rid = b'"%s"' % request_id
        else:
            rid = _json(request_id.decode("utf-8", "replace"))
        return _JSON_LINE % (
            self.heads[error],
            fixed[0],
            rid,
            fixed[1],
            request_time,
            service_time,
            b"null" if response_time is None else b"%.6f" % response_time,
            bytes_in,
            bytes_out,
            fixed[2],
            b"%d" % status if status else b"null",
            b"null" if message is None else _json(message),
            b"true" if error else b"false",
        )


def formatter_for(
    log_format: AccessLogFormat,
    tag: str,
    pid: int,
    clock: Callable[[], int] = time.time_ns,
    coloured: bool = False,
) -> Formatter:
    """The formatter of `log_format`; `coloured` only changes ASCII lines (as sozu)."""
    if log_format == AccessLogFormat.ASCII:
        return (ColouredAsciiFormatter if coloured else AsciiFormatter)(tag, pid, clock)
    if log_format == AccessLogFormat.JSON:
        return JsonFormatter(tag, pid, clock)
    if log_format == AccessLogFormat.PROTOBUF:
        from dataplane.proxy.observability.access_log_protobuf import (
            ProtobufFormatter,  # imports this module
        )

        return ProtobufFormatter(tag, pid, clock)
    raise AccessLogTargetError(f"access log format {log_format.name} is not supported")
