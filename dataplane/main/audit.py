"""main's audit trail: where audit records go (`audit_record.py` says what they hold).

Every record is logged on main's own log at info (as sozu), and appended to:
- `audit_logs_target`: the text line;
- `audit_logs_json_target`: one JSON object per line.
Each is a plain path (sozu's form: a file opened O_APPEND|O_CREAT, mode 0640) or, as a pysozu
extension, any access-log target: `stdout`, `stderr`, `file:///path`, `udp://host:port`,
`tcp://host:port`, `unix:///path`. They are written as the access logs are (the same queue and
targets: `dataplane/proxy/access_log*.py`): never blocking main, a network target that is down
keeps up to 1 MiB of records and is retried every second. A target that cannot be opened at
start stops the start (an audit trail asked for and silently missing would be worse); records
lost later (queue full) are counted and reported on main's log.
"""

from __future__ import annotations

import logging
import os
import selectors
from collections.abc import Callable

import dataplane
from dataplane.command.log_targets import AccessLogTargetError, open_target
from dataplane.command.messages import Request
from dataplane.command.responses import Response, ResponseStatus
from dataplane.main.audit_record import (
    Entry,
    Record,
    entry_for,
    render_json,
    render_text,
    request_digest,
)
from dataplane.main.clients import Client
from dataplane.main.loop import EventLoop, Timer
from dataplane.proxy.observability.access_log import AccessLog
from dataplane.proxy.observability.access_log_format import AsciiFormatter

log = logging.getLogger("pysozu.main.audit")

_SCHEMES = ("file://", "udp://", "tcp://", "unix://")
_RETRY = 1.0


class AuditTargetError(ValueError):
    """An audit target cannot be parsed or opened."""


def target_spec(value: str) -> str:
    """sozu's plain path as a `file://` target; a target spec unchanged."""
    if value in ("stdout", "stderr") or value.startswith(_SCHEMES):
        return value
    return "file://" + os.path.abspath(value)


class _Sink:
    def __init__(self, key: str, value: str, loop: EventLoop, render: Callable[[Record], str]):
        self.key = key
        self.render = render
        self.loop = loop
        try:
            target = open_target(target_spec(value))
        except AccessLogTargetError as error:
            raise AuditTargetError(f"{key}: {error}") from None
        self.queue = AccessLog(
            target,
            AsciiFormatter("AUDIT", os.getpid()),  # unused: records come formatted
            watch=lambda fd, callback: loop.add(fd, selectors.EVENT_WRITE, callback),
            unwatch=loop.remove,
        )
        self.reported_drops = 0

    def write(self, record: Record) -> None:
        self.queue.enqueue((self.render(record) + "\n").encode())
        self.flush()

    def flush(self) -> None:
        self.queue.flush()
        if self.queue.dropped > self.reported_drops:
            log.error(
                "%s: %d audit records could not be written (%s)",
                self.key,
                self.queue.dropped - self.reported_drops,
                self.queue.target.spec,
            )
            self.reported_drops = self.queue.dropped

    @property
    def pending(self) -> bool:
        return bool(self.queue.queue)


class AuditLog:
    """The audit trail's sinks (none configured: main's log only)."""

    def __init__(
        self,
        loop: EventLoop,
        text_target: str | None,
        json_target: str | None,
        socket_path: str,
        boot_generation: Callable[[], int],
    ) -> None:
        self.loop = loop
        self.socket_path = socket_path
        self.boot_generation = boot_generation  # main upgrades so far
        self.sinks: list[_Sink] = []
        self._retry: Timer | None = None
        if text_target:
            self.sinks.append(_Sink("audit_logs_target", text_target, loop, render_text))
        if json_target:
            self.sinks.append(_Sink("audit_logs_json_target", json_target, loop, render_json))

    def request(
        self, client: Client, request: Request, response: Response, elapsed: float | None
    ) -> None:
        """The record of a request that changes something, ended with `response`."""
        ok = response.status == ResponseStatus.OK
        self.emit(
            self._record(
                client,
                entry_for(request),
                ok,
                None if ok else error_code(response.message),
                None if ok else response.message,
                None if elapsed is None else round(elapsed * 1000),
                request_digest(request),
            )
        )

    def refused(self, client: Client, request: Request | None) -> None:
        """The record of a request `command_allowed_uids` refused (any verb)."""
        if request is not None:
            entry, digest = entry_for(request), request_digest(request)
        else:
            entry, digest = Entry("unreadable_request", "-"), None
        self.emit(self._record(client, entry, False, "unauthorized", client.refusal, None, digest))
        peer = client.peer
        log.warning(
            "client %d refused: uid %s (pid %s, %s) is not in command_allowed_uids (%s)",
            client.id,
            "unknown" if peer.uid is None else peer.uid,
            peer.pid or "unknown",
            peer.comm or "unknown",
            request.verb if request is not None else "an unreadable frame",
        )

    def _record(
        self,
        client: Client,
        entry: Entry,
        ok: bool,
        code: str | None,
        reason: str | None,
        elapsed_ms: int | None,
        digest: str | None,
    ) -> Record:
        return Record(
            entry=entry,
            peer=client.peer,
            result="ok" if ok else "err",
            client_id=client.id,
            session=client.session,
            socket=self.socket_path,
            error_code=code,
            reason=reason,
            elapsed_ms=elapsed_ms,
            request_sha256=digest,
            version=dataplane.__version__,
            boot_generation=self.boot_generation(),
        )

    def emit(self, record: Record) -> None:
        log.info("%s", render_text(record))
        for sink in self.sinks:
            sink.write(record)
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        """A target that was down gets its records once it is back (checked every second)."""
        if self._retry is None and any(sink.pending for sink in self.sinks):
            self._retry = self.loop.call_later(_RETRY, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        for sink in self.sinks:
            sink.flush()
        self._schedule_retry()

    def reopen(self) -> None:
        """SIGUSR1 (logrotate): file targets are opened again."""
        for sink in self.sinks:
            sink.queue.reopen()

    def close(self) -> None:
        for sink in self.sinks:
            sink.queue.close()


def error_code(message: str) -> str:
    """sozu's failure buckets, from the FAILURE's words."""
    if message.startswith("could not dispatch"):
        return "dispatch_error"
    if "no answer within" in message:
        return "worker_timeout"
    if message.startswith("worker ") or ", worker " in message:
        return "worker_failure"
    if "not supported" in message or message.startswith("bad request"):
        return "invalid_input"
    return "other"
