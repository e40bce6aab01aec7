"""The state of one client connection, shared by HttpSession and its three parts.

`SessionFields` declares every slot once, with its type and meaning; the phases and the
constants of the state machine live here too (see mux/session.py and LIFECYCLE.md).
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING, Final, Protocol

from dataplane.proxy import buffers, timers

if TYPE_CHECKING:
    from dataplane.proxy.buffers import Buffer
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.body import Body
    from dataplane.proxy.http1.forwarding import ConnectionContext
    from dataplane.proxy.http1.head import RequestHead, ResponseHead
    from dataplane.proxy.http1.head_scan import HeadScanner
    from dataplane.proxy.listener import HttpListener
    from dataplane.proxy.mux.auth_request import AuthExchange
    from dataplane.proxy.mux.backend_pool import BackendConnection
    from dataplane.proxy.mux.h1_stream import H1Stream
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures
    from dataplane.proxy.routing.conn_limit import ConnLimiter
    from dataplane.proxy.routing.error_pages import ErrorPages
    from dataplane.proxy.routing.policy import Edits

# Final: mypyc inlines these (or keeps them in C statics) instead of a module dict lookup
# at each use on the per-request path.
EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT
EPOLLERR: Final = select.EPOLLERR
EPOLLHUP: Final = select.EPOLLHUP
HEAD: Final = 0
CONNECTING: Final = 1
EXCHANGE: Final = 2
PIPE: Final = 3
ANSWER: Final = 4
CLOSED: Final = 5
H2: Final = 6  # on an h2c backend
AUTH: Final = 7  # the request waits for its external authorisation (mux/auth_request.py)
STARVED_FRONT: Final = 1  # which side waits for a buffer (buffers.py)
STARVED_BACK: Final = 2
MAX_CONNECT_TRIES: Final = 4  # the first attempt and sozu's 3 retries
LINGER_SECONDS: Final = 2.0
# Soft stop: an idle connection may still send one request (answered `Connection: close`)
# for this long, so a request racing the worker's stop is served instead of cut.
STOP_GRACE_SECONDS: Final = 1.0
# `body_mark` of a request body window during which the proxy itself stopped reading the
# client (backend behind, no buffer): that window is not held against the client.
BODY_PAUSED: Final = -1
# What the access log formatted for a connection: (request, cluster, backend id, backend, parts).
LogParts = tuple[object, object, object, object, tuple[bytes, ...]]
# Stands for the request id in cached head templates: a NUL never survives head validation.
ID_SLOT: Final = b"\x00"
# `template` after a head's first request on a connection went out rendered whole: the
# template is made (forward_request with ID_SLOT, split) only if the head comes again.
NO_TEMPLATE: Final[list[bytes]] = []
# `failed` of a request no backend refused yet: shared, and passed to `select` as it is.
NO_FAILURES: Final[frozenset[str]] = frozenset()
INFINITY: Final[float] = float("inf")
NO_BUFFER: Final[Buffer] = buffers.NO_BUFFER  # (the same objects, in C statics once compiled)
NO_VIEW: Final[memoryview] = buffers.NO_VIEW
NOT_FILED: Final[float] = timers.NOT_FILED
# `timer_slot` of a session waiting in the loop's `file_soon` list: filed in the wheel at the
# next tick with the deadline it has then, unless it closed first (most `Connection: close`
# connections do: no wheel work at all). Below every slot, so a later deadline is a plain
# assignment (`TimerWheel.arm` returns at once, `_set_deadline` does not even call it).
SOON: Final[float] = float("-inf")


class ClientStream(Protocol):
    """A session's client connection: a bare `_socket.socket` (listener.accept_streams), a
    `TlsStream` over one (tls/), or a test's stand-in."""

    def fileno(self) -> int: ...
    def recv_into(self, buffer: memoryview) -> int: ...
    def recv(self, size: int) -> bytes: ...
    def send(self, data: bytes | memoryview) -> int: ...
    def sendmsg(self, buffers: list[bytes | memoryview]) -> int: ...
    def setsockopt(self, level: int, option: int, value: int) -> None: ...
    def shutdown(self, how: int) -> None: ...
    def close(self) -> None: ...


class SniCheck(Protocol):
    """Strict SNI binding: whether a request's host may use this TLS connection (tls/)."""

    def allows(self, host: str) -> bool: ...


class SessionFields:
    """The state of one session, declared once for HttpSession and its mixins."""

    __slots__ = (
        "auth",
        "back",
        "back_timeout",
        "backend_id",
        "body_mark",
        "body_until",
        "buffer",
        "bytes_in",
        "bytes_out",
        "closing",
        "cluster",
        "conn_ip",
        "conn_limiter",
        "context",
        "deadline",
        "end",
        "error_pages",
        "failed",
        "fd",
        "figures",
        "front_full",
        "h2",
        "head_scan",
        "head_started",
        "host",
        "host_raw",
        "last_head",
        "last_request",
        "listener",
        "log_parts",
        "loop",
        "mask",
        "nodelay",
        "peer_key",
        "phase",
        "replay",
        "request",
        "request_body",
        "request_done",
        "request_id",
        "request_started",
        "response",
        "response_body",
        "response_done",
        "response_edits",
        "response_started",
        "routed",
        "set_cookie",
        "sni_binding",
        "sock",
        "start",
        "starved",
        "sticky_id",
        "template",
        "template_sticky",
        "timer_slot",
        "to_back",
        "to_front",
        "view",
    )

    # Strict SNI binding: set by HttpsSession; None on plain HTTP sessions.
    sni_binding: SniCheck | None

    auth: AuthExchange | None  # the sub-request the current request waits for (AUTH)
    back: BackendConnection | None
    back_timeout: float  # of the current request: its cluster's, else the listener's
    backend_id: str | None  # of the backend the current exchange went to
    # The request body's rate check (`RequestSide._body_too_slow`): `bytes_in` when the current
    # window began (BODY_PAUSED: the proxy stopped reading meanwhile), and when it ends.
    body_mark: int
    body_until: float
    buffer: Buffer  # the client's bytes: [start, end) not yet consumed; NO_BUFFER when none
    bytes_in: int  # of the current request
    bytes_out: int  # of the current response
    closing: bool  # close once the current response is out
    cluster: ClusterRuntime | None  # counted against its per-IP limit
    # The current request's count of its route's connection limit (None: none held), and the
    # address it counts for: given back once, when the request ends (routing/conn_limit.py).
    conn_limiter: ConnLimiter | None
    conn_ip: str
    context: ConnectionContext
    deadline: float
    end: int
    error_pages: ErrorPages | None  # the current route's custom_errors (mux/error_pages.py)
    failed: frozenset[str]  # backends that refused the current request (NO_FAILURES: none)
    fd: int
    figures: ListenerFigures | None
    front_full: bool  # pipelined bytes filled the buffer (or phase H2: its window): reading paused
    h2: H1Stream | None  # phase H2: the request's stream on an h2c backend (mux/h1_stream.py)
    head_scan: HeadScanner | None  # follows a head arriving in pieces (http1/head_scan.py)
    head_started: bool  # some bytes of the next head arrived (request timeout runs)
    host: str
    host_raw: bytes
    last_head: bytes
    last_request: RequestHead | None
    listener: HttpListener
    log_parts: LogParts | None  # the access log's parts of a line (observability/)
    loop: Host
    mask: int  # the client socket's epoll mask
    nodelay: bool  # TCP_NODELAY set on the client socket (see FlowControl._no_delay)
    peer_key: tuple[str, str]  # (client IP, cluster id) for the per-IP limit
    phase: int
    replay: bytes | None  # a body-less request, kept to replay on a fresh connection
    request: RequestHead | None
    request_body: Body | None
    request_done: bool
    request_id: bytes
    request_started: float
    response: ResponseHead | None
    response_body: Body | None
    response_done: bool
    response_edits: tuple[tuple[str, str], ...]
    response_started: float
    routed: ClusterRuntime | None  # the current request's cluster
    set_cookie: bytes
    sock: ClientStream
    starved: int  # STARVED_FRONT | STARVED_BACK: waiting for a buffer from the pool (not reading)
    start: int
    sticky_id: str | None
    template: list[bytes] | None  # the forwarded head, split at the request id
    template_sticky: bytes
    timer_slot: float
    to_back: list[bytes | memoryview] | None  # backlog towards the backend
    to_front: list[bytes | memoryview] | None  # backlog towards the client
    view: memoryview

    def __call__(self, events: int) -> None:
        """The client socket's epoll handler is the session itself: `on_front` (TLS:
        HttpsSession's). Registering `self.on_front` made a bound method per connection
        (~1,400 instructions compiled). Defined here, at the root of the chain: mypyc gives
        a class with `__call__` a vectorcall field that shifts its attributes, so a
        subclass defining it would no longer match the layout its bases were compiled for."""
        self.on_front(events)

    # What each part calls in the parts after it (FlowControl < BackendSide < RequestSide <
    # HttpSession, one chain as mypyc compiles it): defined there, declared here.

    def on_front(self, events: int) -> None:
        raise NotImplementedError

    def _answer(
        self,
        status: int,
        message: str = "",
        retry_after: int | None = None,
        variables: dict[str, str] | None = None,
        name: str | None = None,
        hsts: str | None = None,
        cors: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        raise NotImplementedError

    def _fail(self, status: int, message: str) -> None:
        raise NotImplementedError

    def hold_connection(self, limiter: ConnLimiter, ip: str) -> None:
        raise NotImplementedError

    def serve_errors(self, pages: ErrorPages) -> None:
        raise NotImplementedError

    def _forward(
        self,
        request: RequestHead,
        cluster: ClusterRuntime,
        edits: Edits | None,
        body_limit: int | None = None,
    ) -> None:
        raise NotImplementedError

    def _linger(self) -> None:
        raise NotImplementedError

    def _close_gently(self) -> None:
        raise NotImplementedError

    def _record(
        self, status: int, reached_backend: bool = True, message: str | None = None
    ) -> None:
        raise NotImplementedError

    def _drop_back(self) -> None:
        raise NotImplementedError

    def _release_back(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _become_h2(self, received: bytes) -> None:
        raise NotImplementedError

    def _send_to_front(self, parts: list[bytes | memoryview], total: int) -> bool:
        raise NotImplementedError

    def _send_to_back(self, parts: list[bytes | memoryview], total: int) -> bool:
        raise NotImplementedError

    def _sync_masks(self) -> None:
        raise NotImplementedError

    def _starve(self, side: int) -> None:
        raise NotImplementedError

    def release_idle_buffers(self) -> bool:
        raise NotImplementedError

    def _no_delay(self) -> None:
        raise NotImplementedError

    def _start_pipe(self, back: BackendConnection, response: ResponseHead) -> None:
        raise NotImplementedError

    def _pipe(self, data: memoryview, to_back: bool) -> None:
        raise NotImplementedError

    def _on_head_bytes(self) -> None:
        raise NotImplementedError

    def _forward_request_body(self) -> None:
        raise NotImplementedError

    def _body_resumed(self) -> None:
        raise NotImplementedError

    def _connect(self) -> None:
        raise NotImplementedError

    def _on_response_head_bytes(self, back: BackendConnection) -> None:
        raise NotImplementedError

    def _forward_response_body(self, back: BackendConnection) -> None:
        raise NotImplementedError

    def _back_closed(self) -> None:
        raise NotImplementedError

    def _finish_exchange(self) -> None:
        raise NotImplementedError

    def _flush_front(self) -> bool:
        raise NotImplementedError

    def _flush_back(self) -> bool:
        raise NotImplementedError

    def on_timeout(self, now: float) -> None:
        raise NotImplementedError

    def _client_ip(self) -> str:
        raise NotImplementedError

    def _set_deadline(self, deadline: float) -> None:
        """`loop.timers.arm(self, deadline)`, without the call when the wheel has nothing to
        do: the session is filed no later than `deadline` needs (or waits to be: SOON)."""
        if deadline >= self.timer_slot:
            self.deadline = deadline
        else:
            self.loop.timers.arm(self, deadline)
