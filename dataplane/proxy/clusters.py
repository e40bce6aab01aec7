"""The worker's live proxy structures, kept in step with its ConfigState.

`HttpProxy.apply` mirrors one state request (already accepted by `ConfigState.dispatch`) onto
listeners (settings, routers, answers) and clusters (settings, backends). Listener sockets are
the worker's business (`worker/loop.py`); per-(client IP, cluster) connection counts live here.
"""

from __future__ import annotations

import logging

from dataplane.command.address import SocketAddress
from dataplane.command.backend_tls import BackendTlsContext
from dataplane.command.listener_update import merge_listener_update
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    HttpListenerConfig,
    ListenerType,
    RemoveBackend,
    RemoveListener,
    Request,
    RequestHttpFrontend,
    RequestTcpFrontend,
    StickyCookie,
    TcpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateTcpListenerConfig,
)
from dataplane.proxy.balancing.load_balancing import Backend, BackendSet
from dataplane.proxy.listener import HttpListener
from dataplane.proxy.peer_counts import PeerCounts
from dataplane.proxy.routing.credentials import Credentials
from dataplane.proxy.routing.hash_key import HashKey
from dataplane.proxy.tcp.listener import TcpListeners

log = logging.getLogger("dataplane.worker")

SECURE_NEVER, SECURE_HTTPS, SECURE_ALWAYS = 0, 1, 2
_SECURE = {"never": SECURE_NEVER, "https": SECURE_HTTPS, "always": SECURE_ALWAYS}


def sticky_attributes(cookie: StickyCookie | None) -> tuple[bytes, int, int]:
    """The sticky cookie's fixed attributes (`; Path=/...`), its Expires offset in seconds
    (-1: none) and when it is Secure: rendered once per cluster configuration."""
    if cookie is None:
        return b"; Path=/", -1, SECURE_NEVER
    parts = [f"; Path={cookie.path}"]
    if cookie.domain is not None:
        parts.append(f"; Domain={cookie.domain}")
    if cookie.max_age is not None:
        parts.append(f"; Max-Age={cookie.max_age}")
    if cookie.same_site is not None:
        parts.append(f"; SameSite={cookie.same_site}")
    if cookie.http_only:
        parts.append("; HttpOnly")
    expires = -1 if cookie.expires is None else cookie.expires
    return "".join(parts).encode("ascii"), expires, _SECURE[cookie.secure]


MAX_RETIRED_LISTENERS = 16


class ClusterRuntime:
    """A cluster as the hot path needs it: flat attributes and its backends."""

    __slots__ = (
        "back_timeout",
        "backend_tls",
        "backends",
        "cluster_id",
        "config",
        "connect_timeout",
        "credentials",
        "hash_key",
        "http2",
        "https_redirect",
        "live_backends",
        "max_connections_per_ip",
        "retry_after",
        "sticky_attributes",
        "sticky_expires",
        "sticky_name",
        "sticky_secure",
        "sticky_session",
    )

    def __init__(self, config: Cluster) -> None:
        self.cluster_id = config.cluster_id
        self.backends = BackendSet()
        self.live_backends: set[Backend] = set()
        self.configure(config)

    def configure(self, config: Cluster) -> None:
        self.config = config
        self.sticky_session = config.sticky_session
        self.https_redirect = config.https_redirect
        self.http2 = bool(config.http2)  # backends speak h2c (prior knowledge)
        # TLS to the backends: one SSLContext per cluster configuration (docs/backend-tls.md)
        tls = config.backend_tls
        self.backend_tls = None if tls is None else BackendTlsContext(tls, self.http2)
        self.max_connections_per_ip = config.max_connections_per_ip or 0
        self.retry_after = config.retry_after or 0
        # Overrides of the listener's settings; falsy means "the listener's" (`a or b` to read).
        self.connect_timeout = float(config.connect_timeout or 0)
        self.back_timeout = float(config.back_timeout or 0)
        self.sticky_name = (config.sticky_name or "").encode("ascii")
        self.sticky_attributes, self.sticky_expires, self.sticky_secure = sticky_attributes(
            config.sticky_cookie
        )
        self.backends.configure(config.load_balancing, config.load_metric)
        self.credentials = Credentials(config.authorized_hashes)
        self.hash_key = HashKey.build(config.hash_key)

    def add_backend(self, request: AddBackend) -> None:
        self.live_backends.add(self.backends.add(request))

    def remove_backend(self, backend_id: str, address: SocketAddress) -> None:
        self.backends.remove(backend_id, address)
        self.live_backends = set(self.backends)


class HttpProxy:
    """HTTP listeners, TCP listeners (`tcp`) and clusters of one worker."""

    def __init__(self, max_connections_per_ip: int, retry_after: int) -> None:
        self.listeners: dict[SocketAddress, HttpListener] = {}
        self.tcp = TcpListeners()
        self.clusters: dict[str, ClusterRuntime] = {}
        self.undefined_clusters: set[str] = set()  # runtimes that only hold backends
        self.max_connections_per_ip = max_connections_per_ip
        self.retry_after = retry_after
        self.peers = PeerCounts()  # shared with the listeners (peer_counts.py)
        # Listeners removed lately, by address: one added again there is the same object.
        self._retired: dict[SocketAddress, HttpListener] = {}

    # -- per client IP accounting ------------------------------------------------------------

    def peer_count(self, key: tuple[str, str]) -> int:
        return self.peers.count(key)

    def acquire_peer(self, key: tuple[str, str]) -> None:
        self.peers.acquire(key)

    def release_peer(self, key: tuple[str, str]) -> None:
        self.peers.release(key)

    # -- state requests ----------------------------------------------------------------------

    def apply(self, request: Request) -> None:
        """Mirror a request the ConfigState accepted; verbs without HTTP effect are ignored."""
        handler = getattr(self, f"_{request.verb}", None)
        if handler is not None:
            handler(request.body)

    def _add_http_listener(self, config: HttpListenerConfig) -> None:
        retired = self._retired.pop(config.address, None)
        if type(retired) is HttpListener:
            # Re-created at the same address (a reload changing what no update can say): the
            # connections it accepted keep it, so it takes the new settings and routes in place
            # instead of leaving them on an empty router.
            retired.reset(self, config)
            self.listeners[config.address] = retired
            return
        self.listeners[config.address] = HttpListener(self, config)

    def _update_http_listener(self, patch: UpdateHttpListenerConfig) -> None:
        listener = self.listeners[patch.address]
        config = merge_listener_update(listener.config, patch)  # as the state merged it
        listener.configure(config)
        listener.set_answers(config)

    def _remove_listener(self, request: RemoveListener) -> None:
        if request.proxy == ListenerType.TCP:
            self.tcp.remove_listener(request.address)
            return
        if request.proxy == ListenerType.UDP:
            return  # the worker's UdpProxy (udp/proxy.py) has it
        listener = self.listeners.pop(request.address, None)
        if listener is not None:
            self._retired[request.address] = listener
            while len(self._retired) > MAX_RETIRED_LISTENERS:
                del self._retired[next(iter(self._retired))]

    def _add_http_frontend(self, front: RequestHttpFrontend) -> None:
        self.listeners[front.address].add_frontend(front)

    def _remove_http_frontend(self, front: RequestHttpFrontend) -> None:
        self.listeners[front.address].remove_frontend(front)

    def _add_tcp_listener(self, config: TcpListenerConfig) -> None:
        self.tcp.add_listener(config)

    def _update_tcp_listener(self, patch: UpdateTcpListenerConfig) -> None:
        self.tcp.update_listener(patch)

    def _add_tcp_frontend(self, front: RequestTcpFrontend) -> None:
        self.tcp.add_frontend(front)

    def _remove_tcp_frontend(self, front: RequestTcpFrontend) -> None:
        self.tcp.remove_frontend(front)

    # As in sozu, backends belong to a cluster id, not to the cluster's settings: they may
    # arrive before `add_cluster` and outlive `remove_cluster` (which resets the settings to
    # the defaults). A runtime goes away once it has neither settings nor backends.

    def _runtime(self, cluster_id: str) -> ClusterRuntime:
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            cluster = self.clusters[cluster_id] = ClusterRuntime(Cluster(cluster_id=cluster_id))
            self.undefined_clusters.add(cluster_id)
        return cluster

    def _add_cluster(self, config: Cluster) -> None:
        self._runtime(config.cluster_id).configure(config)
        self.undefined_clusters.discard(config.cluster_id)
        for listener in self.listeners.values():
            listener.answers.set_cluster_answers(config.cluster_id, config.answers)

    def _remove_cluster(self, cluster_id: str) -> None:
        cluster = self.clusters.get(cluster_id)
        if cluster is not None and len(cluster.backends):
            cluster.configure(Cluster(cluster_id=cluster_id))
            self.undefined_clusters.add(cluster_id)
        else:
            self.clusters.pop(cluster_id, None)
            self.undefined_clusters.discard(cluster_id)
        for listener in self.listeners.values():
            listener.answers.remove_cluster(cluster_id)

    def _add_backend(self, request: AddBackend) -> None:
        self._runtime(request.cluster_id).add_backend(request)

    def _remove_backend(self, request: RemoveBackend) -> None:
        cluster = self.clusters.get(request.cluster_id)
        if cluster is None:
            return  # ConfigState already refused an unknown backend; nothing to mirror
        cluster.remove_backend(request.backend_id, request.address)
        if request.cluster_id in self.undefined_clusters and not len(cluster.backends):
            del self.clusters[request.cluster_id]
            self.undefined_clusters.discard(request.cluster_id)
