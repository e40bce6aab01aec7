"""`Config`: what a sozu TOML file says, typed, with sozu's defaults (config.py loads it).

Besides the top-level keys it holds the resolved listeners and clusters and can say them as
requests: `generate_requests` is sozu's static configuration (listeners; per cluster the cluster,
its frontends, certificates and backends; then `activate_listener` for every listener when
`activate_listeners` is true) and `server_config` the first message each worker receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dataplane.command.address import SocketAddress
from dataplane.command.config_clusters import ClusterConfig
from dataplane.command.config_listeners import AnyListenerConfig
from dataplane.command.messages import (
    AccessLogFormat,
    ActivateListener,
    AddCertificate,
    HttpListenerConfig,
    HttpsListenerConfig,
    ListenerType,
    Request,
    ServerConfig,
    ServerMetricsConfig,
    TcpListenerConfig,
)
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError, certificate_fingerprint

EMBEDDED_DEFAULT = "<embedded default>"


@dataclass
class Config:
    """Everything a sozu TOML file says, with sozu's defaults for what it does not."""

    command_socket: str
    source: str = EMBEDDED_DEFAULT
    command_buffer_size: int = 1_000_000
    max_command_buffer_size: int = 2_000_000
    ctl_command_timeout: int = 1000
    worker_count: int = 2
    worker_automatic_restart: bool = True
    worker_timeout: int = 10
    handle_process_affinity: bool = False
    pid_file_path: str | None = None
    saved_state: str | None = None
    automatic_state_save: bool = False
    log_level: str = "info"
    log_target: str = "stdout"
    log_colored: bool = False
    access_logs_target: str | None = None
    access_logs_format: AccessLogFormat = AccessLogFormat.ASCII
    access_logs_colored: bool | None = None
    audit_logs_target: str | None = None
    audit_logs_json_target: str | None = None
    max_connections: int = 10_000
    min_buffers: int = 1
    max_buffers: int = 1000
    buffer_size: int = 16_393
    slab_entries_per_connection: int | None = None
    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    request_timeout: int = 10
    zombie_check_interval: int = 1800
    accept_queue_timeout: int = 60
    evict_on_queue_full: bool = False
    activate_listeners: bool = True
    max_connections_per_ip: int = 0
    retry_after: int = 60
    basic_auth_max_credential_bytes: int = 4096
    splice_pipe_capacity_bytes: int | None = None
    command_allowed_uids: list[int] | None = None
    disable_cluster_metrics: bool = False
    metrics: ServerMetricsConfig | None = None
    prometheus_address: str | None = None
    listeners: list[AnyListenerConfig] = field(default_factory=list)
    clusters: dict[str, ClusterConfig] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # table each listener came from (by object id), for located errors
    listener_origins: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    def generate_requests(self) -> list[Request]:
        return [request for request, _ in self.located_requests()]

    def routing_state(self) -> ConfigState:
        """The state these requests build (e.g. to diff against the running one on reload)."""
        state = ConfigState()
        for request in self.generate_requests():
            state.dispatch(request)
        return state

    def located_requests(self) -> list[tuple[Request, str]]:
        """The static configuration's requests, each with the table it comes from."""
        located: list[tuple[Request, str]] = []
        listeners = self.listeners
        for listener in listeners:
            verb = f"add_{_listener_kind(listener).name.lower()}_listener"
            located.append((Request.of(**{verb: listener}), self._origin(listener)))
        seen_certificates: set[tuple[SocketAddress, str]] = set()
        for cluster_id, cluster in self.clusters.items():
            origin = cluster.origins.get
            located.append((Request.of(add_cluster=cluster.cluster), f"clusters.{cluster_id}"))
            for front in cluster.http_frontends:
                located.append((Request.of(add_http_frontend=front), origin(id(front), "")))
            for add in cluster.certificates:
                # Frontends sharing a certificate (or the listener's default) add it once.
                key = (add.address, _fingerprint(add))
                if key not in seen_certificates:
                    seen_certificates.add(key)
                    located.append((Request.of(add_certificate=add), origin(id(add), "")))
            for front in cluster.https_frontends:
                located.append((Request.of(add_https_frontend=front), origin(id(front), "")))
            for tcp in cluster.tcp_frontends:
                located.append((Request.of(add_tcp_frontend=tcp), origin(id(tcp), "")))
            for udp in cluster.udp_frontends:
                located.append((Request.of(add_udp_frontend=udp), origin(id(udp), "")))
            for backend in cluster.backends:
                located.append((Request.of(add_backend=backend), origin(id(backend), "")))
        if self.activate_listeners:
            for listener in listeners:
                activate = ActivateListener(
                    address=listener.address, proxy=_listener_kind(listener)
                )
                located.append((Request.of(activate_listener=activate), self._origin(listener)))
        return located

    def _origin(self, listener: AnyListenerConfig) -> str:
        return self.listener_origins.get(id(listener), "listeners")

    def server_config(self) -> ServerConfig:
        """The first message every worker receives."""
        return ServerConfig(
            max_connections=self.max_connections,
            front_timeout=self.front_timeout,
            back_timeout=self.back_timeout,
            connect_timeout=self.connect_timeout,
            zombie_check_interval=self.zombie_check_interval,
            accept_queue_timeout=self.accept_queue_timeout,
            min_buffers=self.min_buffers,
            max_buffers=self.max_buffers,
            buffer_size=self.buffer_size,
            log_level=self.log_level,
            log_target=self.log_target,
            access_logs_target=self.access_logs_target,
            command_buffer_size=self.command_buffer_size,
            max_command_buffer_size=self.max_command_buffer_size,
            metrics=self.metrics,
            access_log_format=self.access_logs_format,
            log_colored=self.log_colored,
            access_logs_colored=self.access_logs_colored,
            audit_logs_target=self.audit_logs_target,
            audit_logs_json_target=self.audit_logs_json_target,
            slab_entries_per_connection=self.slab_entries_per_connection,
            basic_auth_max_credential_bytes=self.basic_auth_max_credential_bytes,
            evict_on_queue_full=self.evict_on_queue_full,
            max_connections_per_ip=self.max_connections_per_ip,
            retry_after=self.retry_after,
            splice_pipe_capacity_bytes=self.splice_pipe_capacity_bytes,
        )


def _listener_kind(listener: AnyListenerConfig) -> ListenerType:
    if isinstance(listener, HttpsListenerConfig):
        return ListenerType.HTTPS
    if isinstance(listener, HttpListenerConfig):
        return ListenerType.HTTP
    if isinstance(listener, TcpListenerConfig):
        return ListenerType.TCP
    return ListenerType.UDP


def _fingerprint(add: AddCertificate) -> str:
    try:
        return certificate_fingerprint(add.certificate.certificate)
    except StateError:
        return add.certificate.certificate  # reported when the load replays the requests
