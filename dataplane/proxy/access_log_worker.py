"""Access logs in a worker: which requests are logged, what a line says, when it is written.

As in sozu, access logs follow the log level: successful requests are logged at `info`, failed
ones (`ERROR-ACCESS`: no response, or an error the proxy answered itself) at `error`. The
session asks `loop.access_log` (set only while `info` is on) when a request ends normally, and
`loop.error_access_log` (set while `error` is on) when the proxy answered or gave up, so with
access logs off a request costs one attribute read and nothing else.

When a request ends the session hands over what its line needs (an `Entry`), nothing is
formatted: lines are made in batches, every 64 requests or 0.1 s, and written every 0.1 s
under traffic or at 64 KiB, in one write, never blocking; after the last request of a burst
they go out within a second (the loop's longest sleep). Made one by one, between the system
calls of the requests, each line cost about three times as much CPU (cold caches). The loop
calls `turn` only when `due_at` comes. The time at the start of a line is the loop's time when
the request ended (`loop.now`, the clock every duration uses), turned into wall-clock time at
the batch.

SIGUSR1 (forwarded by main, which gets it from logrotate) is the loop's: it reopens the worker's
log file and calls `reopen` here at its next one-second tick (worker.py).
"""

from __future__ import annotations

import logging
import math
import os
import re
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.command.messages import ServerConfig
from dataplane.proxy.access_log import AccessLog
from dataplane.proxy.access_log_format import AccessRecord, Entry, formatter_for
from dataplane.proxy.access_log_targets import AccessLogTargetError, open_target

if TYPE_CHECKING:
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http_head import RequestHead
    from dataplane.proxy.load_balancing_backend import Backend
    from dataplane.proxy.session_fields import LogParts, SessionFields
    from dataplane.proxy.worker import Loop

log = logging.getLogger("dataplane.worker")

_WRITE_EVERY = 0.1  # seconds between writes under traffic
_WRITE_NOW = 1 << 16  # ... unless this many bytes are waiting
_FORMAT_NOW = 64  # ... or this many requests
_MAX_RECORDS = 8192  # more are dropped (and counted) while the target is stuck
_USER_AGENT = re.compile(rb"\r\nuser-agent:[ \t]*([^\r]*)", re.IGNORECASE)


class WorkerAccessLogs:
    """The worker's access log, bound to its loop (see the module docstring)."""

    def __init__(self, loop: Loop, access_log: AccessLog) -> None:
        self.loop = loop
        self.log = access_log
        self.formatter = access_log.formatter
        self._records: list[Entry] = []  # requests that ended, not formatted yet
        self._write_at = 0.0
        # The loop calls `turn` once its clock reaches this: when lines are due, or at once
        # when many requests wait (a comparison per loop turn, nothing more).
        self.due_at = math.inf
        loop.metrics.counter_sources.append(self._figures)

    @classmethod
    def open(cls, loop: Loop, config: ServerConfig, worker_id: int) -> WorkerAccessLogs | None:
        """The access log of `config` (None, after logging why, if it cannot be used)."""
        spec = config.access_logs_target or config.log_target
        try:
            formatter = formatter_for(config.access_log_format, f"WRK-{worker_id:02d}", os.getpid())
            target = open_target(spec)
        except AccessLogTargetError as error:
            log.error("access logs disabled: %s", error)
            return None

        def watch(fd: int, on_writable: Callable[[int], None]) -> None:
            loop.register(fd, on_writable, select.EPOLLOUT)

        access_log = AccessLog(target, formatter, watch=watch, unwatch=loop.unregister)
        logs = cls(loop, access_log)
        logs.follow_level(logging.getLogger().level)
        return logs

    def follow_level(self, level: int) -> None:
        """Successful requests are logged at info, failures at error (as sozu)."""
        self.loop.access_log = self if level <= logging.INFO else None
        self.loop.error_access_log = self if level <= logging.ERROR else None

    def turn(self) -> None:
        """When `due_at` came: format and write what is due."""
        now = self.loop.now
        due = now >= self._write_at
        records = self._records
        if records and (due or len(records) >= _FORMAT_NOW):
            self._format()
        access_log = self.log
        if (due or access_log.queued_bytes >= _WRITE_NOW) and not access_log.blocked:
            self._write_at = now + _WRITE_EVERY
            access_log.flush()
        # Next time: when the next write is due, if anything waits for it (a blocked target
        # calls `on_writable` itself; its lines are retried then too).
        self.due_at = self._write_at if (self._records or access_log.queue) else math.inf

    def reopen(self) -> None:
        """After logrotate (SIGUSR1): open the target again; queued lines go to the new one."""
        log.info("SIGUSR1: reopening the access log target %s", self.log.target.spec)
        self.log.reopen()

    def close(self) -> None:
        if self._records:
            self._format()
        self.log.close()

    def _figures(self) -> dict[str, int]:
        return {"access_logs.dropped": self.log.dropped}

    # -- one line per request ----------------------------------------------------------------

    def session_ended(
        self,
        session: SessionFields,
        status: int,
        reached_backend: bool,
        message: str | None,
    ) -> None:
        """A request ended: keep what its line needs. Lines are made in batches (`_format`):
        made one by one between system calls, each cost three times as much."""
        records = self._records
        if len(records) >= _MAX_RECORDS:  # the target is stuck and the queue full
            self.log.dropped += 1
            return
        now = self.loop.now
        started = session.request_started
        request = session.request
        routed = session.routed
        backend_id = backend = response_time = None
        if reached_backend:
            backend_id = session.backend_id
            back = session.back
            backend = back.backend if back is not None else None
            if session.response is not None:  # else the backend never answered: `-`
                response_time = max(0.0, session.response_started - started)
        parts = session.log_parts
        if (
            parts is None
            or parts[0] is not request
            or parts[1] is not routed
            or parts[2] != backend_id
            or parts[3] is not backend
        ):
            parts = self._parts(session, request, routed, backend_id, backend)
            session.log_parts = parts
        records.append(
            (
                now,
                parts[4],
                session.request_id,
                now - started,
                response_time,
                session.bytes_in,
                session.bytes_out,
                status,
                message,
            )
        )
        count = len(records)
        if count == 1:  # the first since the last batch: due when the next write is
            self.due_at = self._write_at
        elif count >= _FORMAT_NOW:
            self.due_at = 0.0

    def _format(self) -> None:
        records, self._records = self._records, []
        formatter = self.formatter
        # The wall clock at a loop turn: from the loop's clock (the one every duration uses).
        offset = formatter.clock() - time.monotonic_ns()
        self.log.enqueue_batch(formatter.lines(records, offset))

    def _parts(
        self,
        session: SessionFields,
        request: RequestHead | None,
        routed: ClusterRuntime | None,
        backend_id: str | None,
        backend: Backend | None,
    ) -> LogParts:
        """What the lines of this connection share, as long as its requests do."""
        method = path = agent = None
        if request is not None:
            method = request.method.decode("latin-1")
            path = request.path
            found = _USER_AGENT.search(request.block)
            agent = found.group(1).decode("latin-1") if found else None
        fixed = self.formatter.fixed(
            AccessRecord(
                session_id="%X" % id(session),  # noqa: UP031
                client_address=session.context.client_address,
                cluster_id=routed.cluster_id if routed is not None else None,
                backend_id=backend_id,
                backend_address=str(backend.address) if backend is not None else None,
                user_agent=agent,
                authority=session.host or None,
                method=method,
                path=path,
            )
        )
        return request, routed, backend_id, backend, fixed
