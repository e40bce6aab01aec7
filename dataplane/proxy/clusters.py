"""The worker's live proxy structures, kept in step with its ConfigState.

`HttpProxy.apply` mirrors one state request (already accepted by `ConfigState.dispatch`) onto
listeners (settings, routers, answers) and clusters (settings, backends). Listener sockets are
the worker's business (`worker/loop.py`); per-(client IP, cluster) connection counts live here.
"""

from __future__ import annotations

import logging

from dataplane.command.address import SocketAddress
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
    TcpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateTcpListenerConfig,
)
from dataplane.proxy.cluster_runtime import SECURE_ALWAYS as SECURE_ALWAYS
from dataplane.proxy.cluster_runtime import SECURE_HTTPS as SECURE_HTTPS
from dataplane.proxy.cluster_runtime import SECURE_NEVER as SECURE_NEVER
from dataplane.proxy.cluster_runtime import ClusterRuntime as ClusterRuntime
from dataplane.proxy.cluster_runtime import sticky_attributes as sticky_attributes
from dataplane.proxy.listener import HttpListener
from dataplane.proxy.peer_counts import PeerCounts
from dataplane.proxy.tcp.listener import TcpListeners

log = logging.getLogger("dataplane.worker")

MAX_RETIRED_LISTENERS = 16


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
        return self.peers.count(key[0], key[1])

    def acquire_peer(self, key: tuple[str, str]) -> None:
        self.peers.acquire(key[0], key[1])

    def release_peer(self, key: tuple[str, str]) -> None:
        self.peers.release(key[0], key[1])

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
