"""Access logs in a worker: which requests are logged, what a line says, when it is written.

As in sozu, access logs follow the log level: successful requests are logged at `info`, failed
ones (`ERROR-ACCESS`: no response, or an error the proxy answered itself) at `error`. The
session asks `loop.access_log` (set only while `info` is on) when a request ends normally, and
`loop.error_access_log` (set while `error` is on) when the proxy answered or gave up, so with
access logs off a request costs one attribute read and nothing else.

Lines are queued by `AccessLog` and written once per loop turn (`turn`), never blocking.
SIGUSR1 (forwarded by main, which gets it from logrotate) only raises a flag: the target is
reopened at the next turn, outside whatever the loop was doing when the signal came.
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.command.messages import ServerConfig
from dataplane.proxy.access_log import (
    AccessLog,
    AccessRecord,
    Formatter,
    ascii_scope,
    ascii_what,
)
from dataplane.proxy.access_log_targets import AccessLogTargetError, open_target

if TYPE_CHECKING:
    from dataplane.proxy.http_head import RequestHead
    from dataplane.proxy.load_balancing_backend import Backend
    from dataplane.proxy.session_fields import SessionFields
    from dataplane.proxy.worker import Loop

log = logging.getLogger("dataplane.worker")

_CACHED = 4096  # entries per cache, then it starts again
_USER_AGENT = re.compile(rb"\r\nuser-agent:[ \t]*([^\r]*)", re.IGNORECASE)


class WorkerAccessLogs:
    """The worker's access log, bound to its loop (see the module docstring)."""

    def __init__(self, loop: Loop, access_log: AccessLog) -> None:
        self.loop = loop
        self.log = access_log
        self.reopen_requested = False
        # What a line needs of a parsed head and of a backend, computed once per object:
        # keep-alive connections reuse their parsed head, and backends live long.
        self._heads: dict[RequestHead, tuple[str, str | None]] = {}
        self._backends: dict[Backend, str] = {}
        # ASCII: the parts of a line that a keep-alive connection repeats, formatted once.
        formatter = access_log.formatter if access_log is not None else None
        self._ascii = formatter.ascii_line if formatter and formatter.ascii else None
        self._parts: dict[tuple[object, ...], tuple[str, str]] = {}
        loop.metrics.counter_sources.append(self._figures)

    @classmethod
    def open(cls, loop: Loop, config: ServerConfig, worker_id: int) -> WorkerAccessLogs | None:
        """The access log of `config` (None, after logging why, if it cannot be used).

        SIGUSR1 is handled from now on either way: its default action would kill the worker.
        """
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        spec = config.access_logs_target or config.log_target
        try:
            formatter = Formatter(config.access_log_format, f"WRK-{worker_id:02d}", os.getpid())
            target = open_target(spec)
        except AccessLogTargetError as error:
            log.error("access logs disabled: %s", error)
            return None

        def watch(fd: int, on_writable: Callable[[int], None]) -> None:
            loop.register(fd, on_writable, select.EPOLLOUT)

        access_log = AccessLog(target, formatter, watch=watch, unwatch=loop.unregister)
        logs = cls(loop, access_log)
        signal.signal(signal.SIGUSR1, logs._on_sigusr1)
        logs.follow_level(logging.getLogger().level)
        return logs

    def follow_level(self, level: int) -> None:
        """Successful requests are logged at info, failures at error (as sozu)."""
        self.loop.access_log = self if level <= logging.INFO else None
        self.loop.error_access_log = self if level <= logging.ERROR else None

    def turn(self) -> None:
        """Once per loop turn: reopen if SIGUSR1 came, write what is queued."""
        if self.reopen_requested:
            self.reopen_requested = False
            log.info("SIGUSR1: reopening the access log target %s", self.log.target.spec)
            self.log.reopen()
        access_log = self.log
        if access_log.queue and not access_log.blocked:
            access_log.flush()

    def close(self) -> None:
        self.log.close()

    def _on_sigusr1(self, _signum: int, _frame: object) -> None:
        self.reopen_requested = True

    def _figures(self) -> dict[str, int]:
        return {"access_logs.dropped": self.log.dropped}

    # -- one line per request (called by the session when a request ends) -----------------

    def session_ended(
        self,
        session: SessionFields,
        status: int,
        reached_backend: bool,
        message: str | None,
    ) -> None:
        now = self.loop.now
        started = session.request_started
        request_time = now - started
        response_time = None
        backend_id = backend_address = None
        if reached_backend:
            backend_id = session.backend_id
            response_time = max(0.0, session.response_started - started)
            back = session.back
            if back is not None:
                backend = back.backend
                backend_address = self._backends.get(backend) or self._backend_address(backend)
        request = session.request
        method = path = agent = None
        if request is not None:
            method, agent = self._heads.get(request) or self._head(request)
            path = request.path
        routed = session.routed
        cluster_id = routed.cluster_id if routed is not None else None
        host = session.host or None
        error = status == 0 or (message is not None and status >= 500)
        if self._ascii is not None:  # the line straight from its parts: no record
            key = (request, cluster_id, backend_id, host)
            parts = self._parts.get(key)
            if parts is None:
                what = ascii_what(None, agent, "HTTP", host, method, path)
                parts = self._remember(key, ascii_scope(cluster_id, backend_id), what)
            self.log.enqueue(
                self._ascii(
                    error,
                    "%X" % id(session),  # noqa: UP031 (% is the fastest here)
                    session.request_id.decode("ascii") or None,
                    parts[0],
                    session.context.client_address,
                    backend_address,
                    request_time,
                    request_time - (response_time or 0.0),
                    response_time,
                    session.bytes_in,
                    session.bytes_out,
                    parts[1],
                    status or None,
                    message or None,
                )
            )
            return
        self.log.log(
            AccessRecord(
                session_id="%X" % id(session),  # noqa: UP031
                request_id=session.request_id.decode("ascii") or None,
                cluster_id=cluster_id,
                backend_id=backend_id,
                client_address=session.context.client_address,
                backend_address=backend_address,
                method=method,
                authority=host,
                path=path,
                status=status or None,
                request_time=request_time,
                service_time=request_time - (response_time or 0.0),
                response_time=response_time,
                bytes_in=session.bytes_in,
                bytes_out=session.bytes_out,
                user_agent=agent,
                message=message or None,
                error=error,
            )
        )

    def _remember(self, key: tuple[object, ...], scope: str, what: str) -> tuple[str, str]:
        if len(self._parts) >= _CACHED:
            self._parts.clear()
        parts = self._parts[key] = (scope, what)
        return parts

    def _head(self, request: RequestHead) -> tuple[str, str | None]:
        if len(self._heads) >= _CACHED:
            self._heads.clear()
        found = _USER_AGENT.search(request.block)
        agent = found.group(1).decode("latin-1") if found else None
        facts = self._heads[request] = (request.method.decode("latin-1"), agent)
        return facts

    def _backend_address(self, backend: Backend) -> str:
        if len(self._backends) >= _CACHED:
            self._backends.clear()
        address = self._backends[backend] = str(backend.address)
        return address
