"""Access logs in a worker: which requests are logged, what a line says, when it is written.

As in sozu, access logs follow the log level: successful requests are logged at `info`, failed
ones (`ERROR-ACCESS`: no response, or an error the proxy answered itself) at `error`. The
session asks `loop.access_log` (set only while `info` is on) when a request ends normally, and
`loop.error_access_log` (set while `error` is on) when the proxy answered or gave up, for the
parts of its line that its connection's requests share (`fixed_parts`, made once per connection
and route); with access logs off that is one attribute read.

Nothing is formatted when a request ends: its end waits with the others (request_ends.py) and
comes here in a batch (`take`), every 256 requests or 0.1 s. Lines are written every 0.1 s under
traffic or at 64 KiB, in one write, never blocking; after the last request of a burst they go
out within a second (the loop's longest sleep; it checks `due_at` at every turn). The time at
the start of a line is the loop's time when the request ended (`loop.now`, the clock every
duration uses), turned into wall-clock time at the batch.

SIGUSR1 (forwarded by main, which gets it from logrotate) is the loop's: it reopens the worker's
log file and calls `reopen` here at its next one-second tick (worker/loop.py).
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

from dataplane.command.log_targets import AccessLogTargetError, open_target
from dataplane.command.logs import COLOURED_TARGETS
from dataplane.command.messages import ServerConfig
from dataplane.proxy.observability.access_log import AccessLog
from dataplane.proxy.observability.access_log_format import AccessRecord, Fixed, formatter_for

if TYPE_CHECKING:
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.head import RequestHead
    from dataplane.proxy.mux.session_fields import LogParts, SessionFields
    from dataplane.proxy.observability.request_end import RequestEnd
    from dataplane.proxy.worker.loop import Loop

log = logging.getLogger("dataplane.worker")

_WRITE_EVERY = 0.1  # seconds between writes under traffic
_WRITE_NOW = 1 << 16  # ... unless this many bytes are waiting
_USER_AGENT = re.compile(rb"\r\nuser-agent:[ \t]*([^\r]*)", re.IGNORECASE)


def coloured(config: ServerConfig) -> bool:
    """sozu's rule: colours only on stdout (pysozu: or stderr), `access_logs_colored` or else
    `log_colored` deciding."""
    spec = config.access_logs_target or config.log_target
    wanted = config.access_logs_colored
    return spec in COLOURED_TARGETS and (config.log_colored if wanted is None else wanted)


class WorkerAccessLogs:
    """The worker's access log, bound to its loop (see the module docstring)."""

    def __init__(self, loop: Loop, access_log: AccessLog) -> None:
        self.loop = loop
        self.log = access_log
        self.formatter = access_log.formatter
        self._write_at = 0.0
        # The loop calls `turn` once its clock reaches this: when lines wait for their write
        # (a comparison per loop turn, nothing more).
        self.due_at = math.inf
        loop.metrics.counter_sources.append(self._figures)

    @classmethod
    def open(cls, loop: Loop, config: ServerConfig, worker_id: int) -> WorkerAccessLogs | None:
        """The access log of `config` (None, after logging why, if it cannot be used)."""
        spec = config.access_logs_target or config.log_target
        tag = f"WRK-{worker_id:02d}"
        try:
            formatter = formatter_for(
                config.access_log_format, tag, os.getpid(), coloured=coloured(config)
            )
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
        self.loop.request_ends.follow()

    def take(self, ends: list[RequestEnd]) -> None:
        """A batch of request ends: the lines of those this log wants, written when due."""
        access_log = self.log
        if access_log.queued_bytes >= access_log.max_queued_bytes:  # stuck: do not format
            access_log.dropped += sum(fixed is not None for *_, fixed in ends)
        else:
            offset = self.formatter.clock() - time.monotonic_ns()  # loop clock -> wall clock
            access_log.enqueue_batch(self.formatter.lines(ends, offset))
        if self.loop.now >= self._write_at or access_log.queued_bytes >= _WRITE_NOW:
            self.turn()
        else:
            self.due_at = self._write_at

    def turn(self) -> None:
        """When `due_at` came: write what waits (a blocked target calls `on_writable` itself;
        a broken one is retried here, at most every 0.1 s)."""
        access_log = self.log
        if not access_log.blocked:
            self._write_at = self.loop.now + _WRITE_EVERY
            access_log.flush()
        self.due_at = math.inf if access_log.blocked or not access_log.queue else self._write_at

    def reopen(self) -> None:
        """After logrotate (SIGUSR1): open the target again; queued lines go to the new one."""
        log.info("SIGUSR1: reopening the access log target %s", self.log.target.spec)
        self.log.reopen()

    def close(self) -> None:
        self.log.close()

    def _figures(self) -> dict[str, int]:
        return {"access_logs.dropped": self.log.dropped}

    def stream_line(self, record: AccessRecord, message: str | None) -> None:
        """One line for a relayed connection (TCP): no request parts, its duration as both
        times; an error-level line when `message` says the proxy ended it."""
        formatter = self.formatter
        formatter.restamp()
        duration = record.request_time
        line = formatter.line(
            message is not None,  # an error: the proxy ended it (no status to judge by)
            formatter.fixed(record),
            None,
            duration,
            duration,
            None,
            record.bytes_in,
            record.bytes_out,
            None,
            message,
        )
        self.log.enqueue(line)
        self.due_at = min(self.due_at, self.loop.now)  # written at the loop's next turn

    def fixed_parts(self, session: SessionFields, backend_id: str | None) -> Fixed:
        """What the lines of this connection's requests share, made again only when its
        request head, cluster or backend changes."""
        request = session.request
        routed = session.routed
        back = session.back or session.h2  # phase H2: the h2c stream's backend
        backend = back.backend if back is not None and backend_id is not None else None
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
        return parts[4]

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
                # sozu's mux: "http" or "https" by the listener, for HTTP/1.1 and HTTP/2 alike
                protocol="https" if session.context.x_proto.endswith(b"https") else "http",
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
