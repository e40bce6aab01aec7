"""What a connection may use of the worker that runs it: the `Host` interface.

HTTP sessions, TCP sessions, TLS handshakes, PROXY-header readers, backend connections and
the request-end batches are written against `Host`, never against the worker's loop: the
loop (`Loop`) is one host, a unit test's fake is another. Nothing here runs; the interface
is for the type checker (the loop's conformance is checked where it is built, in boot).

The interface is the sum of four small parts, each one concern:

- `Reactor`: the clock of the current loop turn, the timer wheel, and the event set (a
  handler per descriptor, called with the epoll mask).
- `Admission`: the connections counted against `max_connections`, and what an acceptor does
  when they are too many.
- `Pools`: the buffer pool and the pool of idle backend connections.
- `Observability`: counters, metrics, request ends and access logs, events to main.

plus the worker's live configuration (`proxy`), its request ids and its response-head parser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # an install without mypy: the decorator only speaks to mypyc

    def mypyc_attr(*_args: str, **_flags: bool) -> Callable[[type[Any]], type[Any]]:  # type: ignore[misc]
        return lambda cls: cls


if TYPE_CHECKING:
    from dataplane.command.responses import WorkerResponse
    from dataplane.proxy.buffers import BufferPool
    from dataplane.proxy.clusters import HttpProxy
    from dataplane.proxy.http1.forwarding import RequestIds
    from dataplane.proxy.http1.head import ResponseParser
    from dataplane.proxy.http2.counters import H2Counters
    from dataplane.proxy.mux.backend_pool import BackendPool
    from dataplane.proxy.mux.h2_backends import H2Backends
    from dataplane.proxy.mux.session_fields import SessionFields
    from dataplane.proxy.observability.access_log_format import AccessRecord, Fixed
    from dataplane.proxy.observability.counters import Counters, ProxyProtocolFigures
    from dataplane.proxy.observability.metrics import MetricsRegistry
    from dataplane.proxy.observability.request_end import RequestEnd
    from dataplane.proxy.timers import Timed, TimerWheel

# What the event set calls for a descriptor: the handler, with the epoll event mask.
Handler = Callable[[int], None]


class AccessLogLines(Protocol):
    """The access log, as a session sees it: what its requests' lines share."""

    def fixed_parts(self, session: SessionFields, backend_id: str | None) -> Fixed: ...

    def stream_line(self, record: AccessRecord, message: str | None) -> None:
        """A relayed (TCP) connection's line; `message`: the proxy ended it (error level)."""
        ...


class Flushable(Protocol):
    def flush(self) -> None: ...


@mypyc_attr(allow_interpreted_subclasses=True)
class Host:
    """Everything a connection may use of its worker (see the module docstring). The
    attributes are declared here and set by the host's `__init__`."""

    # -- Reactor: the clock, the timers and the event set ------------------------------------
    now: float  # monotonic time, read once per loop turn
    stopping: bool  # a soft stop is under way
    timers: TimerWheel
    # The registered descriptors: read it only (`fd in handlers` says whether it is).
    handlers: dict[int, Handler]

    def register(self, fd: int, handler: Handler, mask: int) -> None:
        raise NotImplementedError

    def set_handler(self, fd: int, handler: Handler) -> None:
        raise NotImplementedError

    def modify(self, fd: int, mask: int) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def flush_soon(self, writer: Flushable) -> None:
        """Call `writer.flush()` once after this turn's events (batched writes)."""
        raise NotImplementedError

    def file_soon(self, entry: Timed) -> None:
        """File `entry` (`timer_slot` SOON, `deadline` set) in `timers` at the next tick,
        unless it is closed (NOT_FILED) by then: a new session (mux/session_fields.SOON)."""
        raise NotImplementedError

    def forget(self, fd: int) -> None:
        """Drop the handler of a socket about to be closed (its close leaves the epoll set)."""
        raise NotImplementedError

    def hand_over(self, fd: int, mask: int) -> None:
        """A connection changing hands (a TLS handshake done, its session next): `fd` stays
        in the event set with `mask`, its handler dropped, and the next `register` of it
        sets the new handler, changing the mask only if it differs: no epoll_ctl DEL and
        ADD. Call `end_hand_over` once that register is done (or did not happen)."""
        raise NotImplementedError

    def end_hand_over(self, fd: int) -> None:
        """After `hand_over`: if nothing registered `fd` again, it leaves the event set."""
        raise NotImplementedError

    # -- Admission: the open connections (sessions, handshakes, PROXY-header readers) --------
    sessions: set[Any]
    max_connections: int

    def pause_accept(self) -> None:
        """Full: stop accepting (or evict idle connections to make room)."""
        raise NotImplementedError

    def session_closed(self, session: Any) -> None:
        """A connection counted in `sessions` ended."""
        raise NotImplementedError

    # -- Pools: buffers (`buffer_size`: the client buffer's, the limit on a head) and idle
    # backend connections
    buffers: BufferPool
    buffer_size: int
    pool: BackendPool
    h2_backends: H2Backends

    # -- Observability: where figures, finished requests and events go ------------------------
    counters: Counters
    h2_counters: H2Counters  # what the HTTP/2 connections refused or did (http2/counters.py)
    metrics: MetricsRegistry
    metrics_enabled: bool
    proxy_protocol: ProxyProtocolFigures
    # Sessions append a finished request here (None: nobody wants them); the worker hands
    # them to the metrics and the access log in batches (worker/request_ends.py).
    ended: list[RequestEnd] | None
    access_log: AccessLogLines | None  # set while the access log's `info` level is on
    error_access_log: AccessLogLines | None  # set while its `error` level is on

    def send(self, response: WorkerResponse) -> None:
        """To main: events (a backend down, up, ...)."""
        raise NotImplementedError

    # -- the worker's live configuration, request ids, response-head parser ----------------
    proxy: HttpProxy  # listeners and clusters, as the worker's state has them
    response_parser: ResponseParser
    request_ids: RequestIds  # compiled: its `next()` a native call (tests subclass it)
