"""An HTTP listener in a worker: its socket, settings, routes and default answers.

The listening socket comes from main over SCM (shared accept queue) or, when main sent none,
is bound here with SO_REUSEADDR only: SO_REUSEPORT would let an unrelated process bind the same
address and silently take a share of the connections. Accepting stops when the listener is
deactivated, when the worker is at `max_connections`, or during a soft stop.
"""

from __future__ import annotations

import _socket
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from dataplane.command.messages import (
    HttpListenerConfig,
    RequestHttpFrontend,
    TcpListenerConfig,
)
from dataplane.proxy.answers.responses import Answers, listener_answer_map
from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.forwarding import ConnectionContext, TrustedProxies
from dataplane.proxy.http1.head import RequestHead, RequestParser
from dataplane.proxy.http1.request_path import route_path
from dataplane.proxy.http2.limits import H2Limits
from dataplane.proxy.peer_counts import PeerCounts
from dataplane.proxy.proxy_protocol.header import Peer, ProxiedPeer
from dataplane.proxy.routing.policy import has_policy
from dataplane.proxy.routing.router import Route, Router, normalize_host

if TYPE_CHECKING:
    from dataplane.proxy.cluster_runtime import ClusterRuntime
    from dataplane.proxy.clusters import HttpProxy

log = logging.getLogger("dataplane.worker")

ACCEPT_BATCH: Final = 64
ROUTE_CACHE_SIZE: Final = 4096
HEAD_CACHE_SIZE: Final = 1024
HOST_CACHE_SIZE: Final = 1024
PEER_CACHE_SIZE = 4096  # connection contexts remembered, by peer IP
HEAD_CACHE_MAX_BYTES: Final = 1024  # only short heads are remembered: at most 1 MiB in all
BACKLOG: Final = 1024
SOCK_STREAM: Final = socket.SOCK_STREAM
IPPROTO_TCP: Final = socket.IPPROTO_TCP
TCP_INFO: Final = socket.TCP_INFO
BIG_ENDIAN: Final = sys.byteorder == "big"


def bind_listener(config: HttpListenerConfig | TcpListenerConfig) -> socket.socket:
    """A listening socket for a listener this worker must bind itself (main holds none)."""
    address = config.address
    family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address.sockaddr())
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class HttpListener:
    """One HTTP listener's configuration, router and answers; its socket when active."""

    scheme = "http"  # "https" for HttpsListener (tls/listener.py)
    connection_context: Callable[[Peer], ConnectionContext]  # set by `configure`

    def __init__(self, proxy: HttpProxy, config: HttpListenerConfig) -> None:
        self.reset(proxy, config)

    def reset(self, proxy: HttpProxy, config: HttpListenerConfig) -> None:
        """As new (`__init__`), keeping the object: what a listener re-created at its address
        is (clusters.py). Compiled by mypyc, `HttpListener.__init__(listener, ...)` would not
        run again."""
        self.proxy = proxy
        self.peers: PeerCounts = proxy.peers  # the worker's, read natively by sessions
        # The proxy's clusters by id: the very dict (HttpProxy never replaces it), read
        # natively per request instead of through the (interpreted) proxy object.
        self.clusters: dict[str, ClusterRuntime] = proxy.clusters
        self.router = Router()
        self._routes: dict[tuple[str, str, bytes], tuple[Route | None, bool]] = {}
        # A new object whenever a frontend comes or goes: a decision remembered on a parsed
        # head (`RequestHead.decided_by`, mux/request_route.py) holds while it is the same.
        self.routes_version = object()
        self.sock: socket.socket | None = None
        self.accepting = False
        self.configure(config)
        self.answers = Answers()
        self.set_answers(config)
        self._hosts: dict[bytes, str | None] = {}

    def configure(self, config: HttpListenerConfig) -> None:
        self.config = config
        self.h2_limits = H2Limits.from_listener(config)  # for its HTTP/2 connections
        self.h2c = config.h2c  # prior-knowledge HTTP/2 on a clear-text listener
        self.front_timeout = float(config.front_timeout)
        self.back_timeout = float(config.back_timeout)
        self.connect_timeout = float(config.connect_timeout)
        self.request_timeout = float(config.request_timeout)
        # Request bodies must come at `body_min_rate` bytes/s or more over each window of
        # `body_window` seconds (session_request._body_too_slow); 0: no such check.
        self.body_min_rate = float(config.request_body_min_rate)
        body_window = float(config.request_body_timeout)
        self.body_window = body_window if self.body_min_rate and body_window else 0.0
        self.sticky_name = config.sticky_name.encode("ascii")
        self.request_id_header = config.sozu_id_header or "Sozu-Id"
        self.parser = RequestParser(self.request_id_header)
        self._heads: dict[bytes, RequestHead] = {}
        # The latest head parsed on this listener and its parse: a new connection starts with
        # them as its "previous head" (mux/session.py), so the same head from another client
        # is neither searched for nor looked up (~2,000 instructions per new connection).
        self.recent_head = b""
        self.recent_request: RequestHead | None = None
        public = config.public_address or config.address
        self._public = (str(public.ip), public.port)
        # None: no peer is trusted, and connections skip the lookup altogether.
        self.trusted_proxies = (
            TrustedProxies(config.trusted_proxies) if config.trusted_proxies else None
        )
        # Connections start with a PROXY protocol header (proxy_protocol/accept.py): the address it
        # carries is the peer everything here sees, `trusted_proxies` included, and the one
        # the client connected to is the public address. Chosen here, so that listeners
        # without it do no PROXY work per connection.
        self.expect_proxy = config.expect_proxy
        self.connection_context = (
            self._proxied_context if config.expect_proxy else self._connection_context
        )
        self._peer_contexts: dict[str, ConnectionContext] = {}  # by peer IP: its settings

    def set_answers(self, config: HttpListenerConfig) -> None:
        answers = Answers(listener_answer_map(config), self.request_id_header)
        for cluster in self.proxy.clusters.values():
            if cluster.config.answers:
                answers.set_cluster_answers(cluster.cluster_id, cluster.config.answers)
        self.answers = answers

    def _connection_context(self, peer: Peer) -> ConnectionContext:
        """`connection_context`: what this connection's forwarded requests say about it,
        decided once, at accept: its address, the listener's scheme and public address, and
        whether the peer is one of `trusted_proxies` (a connection keeps what it got when
        the listener changes). Rendered once per peer address: another connection from the
        same address only renders its port (`ConnectionContext.for_port`)."""
        known = self._peer_contexts.get(peer[0])
        if known is not None:
            return known.for_port(peer[1])
        config = self.config
        context = ConnectionContext(
            peer,
            self._public,
            self.scheme,
            self.request_id_header,
            config.send_x_real_ip,
            config.elide_x_real_ip,
            self.trusted_proxies,
        )
        if len(self._peer_contexts) >= PEER_CACHE_SIZE:
            self._peer_contexts.clear()  # bounded: many addresses churn it, never grow it
        self._peer_contexts[peer[0]] = context
        return context

    def _proxied_context(self, peer: Peer) -> ConnectionContext:
        """`connection_context` on an `expect_proxy` listener: `peer` is the source of the
        PROXY header (the load balancer adds no HTTP headers: it is never the one checked
        against `trusted_proxies`), and the header's destination, the address the client
        connected to, is the public address (as sozu does; `public_address` cannot be set
        with `expect_proxy`). Headers without addresses leave the real peer and the
        listener's address."""
        config = self.config
        public = peer.public if isinstance(peer, ProxiedPeer) else None
        return ConnectionContext(
            peer,
            public or self._public,
            self.scheme,
            self.request_id_header,
            config.send_x_real_ip,
            config.elide_x_real_ip,
            self.trusted_proxies,
        )

    def parse(self, head: bytes) -> RequestHead:
        """Parse a request head (HttpSyntaxError); short heads seen before are not re-parsed:
        clients on different connections send the very same heads."""
        request = self._heads.get(head)
        if request is None:
            request = self.parser.parse(head)
            if len(head) <= HEAD_CACHE_MAX_BYTES:
                if len(self._heads) >= HEAD_CACHE_SIZE:
                    self._heads.clear()
                self._heads[head] = request
        return request

    def normalize_host(self, raw: bytes) -> str | None:
        """`router.normalize_host`, remembered: every new connection sends its Host again."""
        try:
            return self._hosts[raw]
        except KeyError:
            pass
        host = normalize_host(raw)
        if len(self._hosts) >= HOST_CACHE_SIZE:
            self._hosts.clear()  # bounded: hostile traffic can churn it, never grow it
        self._hosts[raw] = host
        return host

    def lookup(self, host: str, path: str, method: bytes) -> tuple[Route | None, bool]:
        """The route for a request target's `path` (as sent: `RequestHead.path`) and whether
        it carries a policy (`policy.decide`). Decisions are remembered, by the path as sent,
        until the routes change: the path is normalised only when the decision is made."""
        key = (host, path, method)
        try:
            return self._routes[key]
        except KeyError:
            pass
        try:
            routed = route_path(path)
        except HttpSyntaxError:
            route = None  # the parser refuses such paths first (400); fail closed regardless
        else:
            route = self.router.lookup(host, routed, method.decode("ascii"))
        decision = (route, route is not None and has_policy(route))
        if len(self._routes) >= ROUTE_CACHE_SIZE:
            self._routes.clear()  # bounded: hostile traffic can churn it, never grow it
        self._routes[key] = decision
        return decision

    def add_frontend(self, front: RequestHttpFrontend) -> None:
        route = self.router.add_frontend(front)
        self._routes_changed()
        problem = route.path_pattern.problem
        if problem is not None:
            log.warning(
                "listener %s: frontend %s path %r can never match: %s",
                self.config.address,
                front.hostname,
                front.path.value,
                problem,
            )

    def remove_frontend(self, front: RequestHttpFrontend) -> None:
        self.router.remove_frontend(front)
        self._routes_changed()

    def _routes_changed(self) -> None:
        self._routes.clear()
        self.routes_version = object()

    def accept_batch(
        self, room: int, nodelay: bool = True
    ) -> list[tuple[socket.socket, tuple[str, int]]]:
        assert self.sock is not None
        return accept_batch(self.sock, room, nodelay)


def accept_batch(
    sock: socket.socket, room: int, nodelay: bool = True
) -> list[tuple[socket.socket, tuple[str, int]]]:
    """Up to `room` (at most ACCEPT_BATCH) pending connections of a listening socket, made
    non-blocking; Nagle off when `nodelay` (plain HTTP sessions turn it off themselves, only
    when it matters). Shared by every kind of listener."""
    accepted: list[tuple[socket.socket, tuple[str, int]]] = []
    for _ in range(pending(sock, room)):
        try:
            conn, peer = sock.accept()
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break  # ECONNABORTED, EMFILE...: try again on the next readiness
        conn.setblocking(False)
        if nodelay:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted.append((conn, peer))
    return accepted


def pending(sock: socket.socket, room: int) -> int:
    """How many connections to accept now: those waiting in the listening socket's accept
    queue (TCP_INFO's `tcpi_unacked`, which a listening socket sets to its queue's length),
    at most `room` and ACCEPT_BATCH. Accepting until EAGAIN instead ended each batch with an
    exception (~9,000 instructions compiled, as much as the rest of an accept); this costs
    one `getsockopt` in its place. Connections arriving meanwhile leave the socket readable:
    the next turn takes them. A socket without TCP_INFO (not TCP): until EAGAIN."""
    limit = min(room, ACCEPT_BATCH)
    try:
        info = sock.getsockopt(IPPROTO_TCP, TCP_INFO, 32)
    except OSError:
        return limit
    if len(info) < 28:
        return limit
    if BIG_ENDIAN:
        queued = int.from_bytes(info[24:28], "big")
    else:  # a u32 in native order, read without a call
        queued = info[24] | info[25] << 8 | info[26] << 16 | info[27] << 24
    return min(queued, limit)


def accept_streams(sock: socket.socket, room: int) -> list[tuple[_socket.socket, tuple[str, int]]]:
    """`accept_batch` for plain HTTP sessions, without the cost of `socket.socket` objects:
    each connection is a bare `_socket.socket` (the C type under `socket.socket`: the same
    methods, none of the Python layer's per-connection work, enum properties and `close`
    wrapper), made non-blocking; Nagle stays on (sessions turn it off when it matters).
    A list, not a generator: compiled, a batch of one costs no generator object."""
    accept = sock._accept  # type: ignore[attr-defined]  # the C accept, returns (fd, peer)
    stream = _socket.socket
    accepted: list[tuple[_socket.socket, tuple[str, int]]] = []
    for _ in range(pending(sock, room)):
        try:
            pair = accept()  # (fd, peer): indexed, not unpacked (no iterator, compiled)
        except OSError:
            break  # EAGAIN: none left; ECONNABORTED, EMFILE...: again on the next readiness
        fd = pair[0]
        peer = pair[1]
        try:
            # family -1: read back from the socket (one getsockname, which the C type does
            # for every descriptor anyway); type and protocol given, so no more system calls.
            conn = stream(-1, SOCK_STREAM, 0, fd)
        except OSError:
            os.close(fd)
            continue
        conn.setblocking(False)
        accepted.append((conn, peer))
    return accepted
