"""The answers of the command protocol, named after sozu 2.1's `command.proto`.

Main answers a client with `Processing` frames (progress, events), then exactly one `Ok` or
`Failure`. A worker answers main with a `WorkerResponse` carrying the request's id.
"""

from __future__ import annotations

import enum
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    CertificateAndKey,
    Cluster,
    HealthCheckConfig,
    HttpListenerConfig,
    HttpsListenerConfig,
    Message,
    MetricDetail,
    RequestHttpFrontend,
    RequestTcpFrontend,
    RequestUdpFrontend,
    TcpListenerConfig,
    UdpListenerConfig,
)


class ResponseStatus(enum.IntEnum):
    OK = 0
    PROCESSING = 1
    FAILURE = 2


class RunState(enum.IntEnum):
    RUNNING = 0
    STOPPING = 1
    STOPPED = 2
    NOT_ANSWERING = 3


class EventKind(enum.IntEnum):
    BACKEND_DOWN = 0
    BACKEND_UP = 1
    NO_AVAILABLE_BACKENDS = 2
    REMOVED_BACKEND_HAS_NO_CONNECTIONS = 3
    CLUSTER_ADDED = 4
    CLUSTER_REMOVED = 5
    FRONTEND_ADDED = 6
    FRONTEND_REMOVED = 7
    CERTIFICATE_ADDED = 8
    CERTIFICATE_REMOVED = 9
    CERTIFICATE_REPLACED = 10
    LISTENER_ACTIVATED = 11
    LISTENER_DEACTIVATED = 12
    CONFIGURATION_RELOADED = 13
    WORKER_KILLED = 14
    WORKER_RELAUNCHED = 15
    LOGGING_LEVEL_CHANGED = 16
    METRICS_CONFIGURED = 17
    LISTENER_UPDATED = 18
    STATE_LOADED = 19
    STATE_SAVED = 20
    LISTENER_ADDED = 21
    LISTENER_REMOVED = 22
    SOZU_STOP_REQUESTED = 23
    MAIN_UPGRADED = 24
    WORKER_UPGRADED = 25
    EVENTS_SUBSCRIBED = 26
    HEALTH_CHECK_HEALTHY = 27
    HEALTH_CHECK_UNHEALTHY = 28
    CLUSTER_RECOVERED = 29
    METRIC_DETAIL_CHANGED = 30


class WorkerInfo(Message, kw_only=True):
    id: int
    pid: int
    run_state: RunState
    # pysozu additions, shown by `status`
    version: str | None = None
    started_at: float | None = None
    connections: int | None = None
    unhealthy_backends: int | None = None  # held out of rotation by its health checks
    health_prober: bool | None = None  # the one worker running the health probes


class WorkerInfos(Message, kw_only=True):
    vec: list[WorkerInfo] = []


class MetricDetailTransition(Message, kw_only=True):
    previous_effective: MetricDetail
    effective: MetricDetail
    transition_kind: str
    client_id: str | None = None


class Event(Message, kw_only=True):
    kind: EventKind
    cluster_id: str | None = None
    backend_id: str | None = None
    address: SocketAddress | None = None
    metric_detail: MetricDetailTransition | None = None


class ListedFrontends(Message, kw_only=True):
    http_frontends: list[RequestHttpFrontend] = []
    https_frontends: list[RequestHttpFrontend] = []
    tcp_frontends: list[RequestTcpFrontend] = []
    udp_frontends: list[RequestUdpFrontend] = []


class ListenersList(Message, kw_only=True):
    http_listeners: dict[str, HttpListenerConfig] = {}
    https_listeners: dict[str, HttpsListenerConfig] = {}
    tcp_listeners: dict[str, TcpListenerConfig] = {}
    udp_listeners: dict[str, UdpListenerConfig] = {}


class BackendHealth(Message, kw_only=True):
    """pysozu addition: a health-checked backend's verdict in the worker that answered."""

    backend_id: str
    address: SocketAddress
    healthy: bool


class ClusterInformation(Message, kw_only=True):
    configuration: Cluster | None = None
    http_frontends: list[RequestHttpFrontend] = []
    https_frontends: list[RequestHttpFrontend] = []
    tcp_frontends: list[RequestTcpFrontend] = []
    backends: list[AddBackend] = []
    udp_frontends: list[RequestUdpFrontend] = []
    # pysozu addition, in a worker's answer: the verdicts of the cluster's health checks
    backend_health: list[BackendHealth] = []


class ClusterInformations(Message, kw_only=True):
    vec: list[ClusterInformation] = []


class ClusterHashes(Message, kw_only=True):
    map: dict[str, int] = {}


class CertificateSummary(Message, kw_only=True):
    domain: str
    fingerprint: str


class CertificatesByAddress(Message, kw_only=True):
    address: SocketAddress
    certificate_summaries: list[CertificateSummary] = []


class ListOfCertificatesByAddress(Message, kw_only=True):
    certificates: list[CertificatesByAddress] = []


class CertificatesWithFingerprints(Message, kw_only=True):
    certs: dict[str, CertificateAndKey] = {}


class RequestCounts(Message, kw_only=True):
    map: dict[str, int] = {}


class MaxConnectionsPerIpLimit(Message, kw_only=True):
    limit: int


class HealthChecksList(Message, kw_only=True):
    map: dict[str, HealthCheckConfig] = {}


class Percentiles(Message, kw_only=True):
    samples: int
    p_50: int
    p_90: int
    p_99: int
    p_99_9: int
    p_99_99: int
    p_99_999: int
    p_100: int
    sum: int


class Bucket(Message, kw_only=True):
    count: int
    le: int


class FilteredHistogram(Message, kw_only=True):
    sum: int
    count: int
    buckets: list[Bucket] = []


class FilteredTimeSerie(Message, kw_only=True):
    last_second: int
    last_minute: list[int] = []
    last_hour: list[int] = []


class FilteredMetricsInner(Message, kw_only=True, rename="upper", omit_defaults=True):
    gauge: int | None = None
    count: int | None = None
    time: int | None = None
    percentiles: Percentiles | None = None
    time_serie: FilteredTimeSerie | None = None
    histogram: FilteredHistogram | None = None


class FilteredMetrics(Message, kw_only=True):
    inner: FilteredMetricsInner


class BackendMetrics(Message, kw_only=True):
    backend_id: str
    metrics: dict[str, FilteredMetrics] = {}


class ClusterMetrics(Message, kw_only=True):
    cluster: dict[str, FilteredMetrics] = {}
    backends: list[BackendMetrics] = []


class WorkerMetrics(Message, kw_only=True):
    proxy: dict[str, FilteredMetrics] = {}
    clusters: dict[str, ClusterMetrics] = {}


class AggregatedMetrics(Message, kw_only=True):
    main: dict[str, FilteredMetrics] = {}
    workers: dict[str, WorkerMetrics] = {}
    clusters: dict[str, ClusterMetrics] = {}
    proxying: dict[str, FilteredMetrics] = {}


class AvailableMetrics(Message, kw_only=True):
    proxy_metrics: list[str] = []
    cluster_metrics: list[str] = []


class WorkerMetricDetailStatus(Message, kw_only=True):
    configured: MetricDetail
    effective: MetricDetail
    previous_effective: MetricDetail
    active_lease_count: int


class MetricDetailStatus(Message, kw_only=True):
    configured: MetricDetail
    effective: MetricDetail
    previous_effective: MetricDetail
    workers: dict[str, WorkerMetricDetailStatus] = {}


class ContentType(Message, kw_only=True, rename="upper", omit_defaults=True):
    """sozu's `oneof content_type`: exactly one field is set."""

    workers: WorkerInfos | None = None
    metrics: AggregatedMetrics | None = None
    worker_responses: WorkerResponses | None = None
    event: Event | None = None
    frontend_list: ListedFrontends | None = None
    listeners_list: ListenersList | None = None
    worker_metrics: WorkerMetrics | None = None
    available_metrics: AvailableMetrics | None = None
    clusters: ClusterInformations | None = None
    cluster_hashes: ClusterHashes | None = None
    certificates_by_address: ListOfCertificatesByAddress | None = None
    certificates_with_fingerprints: CertificatesWithFingerprints | None = None
    request_counts: RequestCounts | None = None
    max_connections_per_ip_limit: MaxConnectionsPerIpLimit | None = None
    health_checks_list: HealthChecksList | None = None
    metric_detail_status: MetricDetailStatus | None = None
    worker_metric_detail_status: WorkerMetricDetailStatus | None = None
    # pysozu addition: a hash of the routing state (so the operator can tell a restart).
    state_hash: int | None = None

    def __post_init__(self) -> None:
        set_fields = [name for name in self.__struct_fields__ if getattr(self, name) is not None]
        if len(set_fields) != 1:
            raise ValueError(f"content_type must hold exactly one kind, got {len(set_fields)}")


class ResponseContent(Message, kw_only=True):
    content_type: ContentType

    @classmethod
    def of(cls, **kind: Any) -> ResponseContent:
        """`ResponseContent.of(workers=WorkerInfos(...))`."""
        return cls(content_type=ContentType(**kind))

    @property
    def kind(self) -> str:
        for name in self.content_type.__struct_fields__:
            if getattr(self.content_type, name) is not None:
                return name
        raise AssertionError("unreachable: ContentType holds exactly one kind")

    @property
    def value(self) -> Any:
        return getattr(self.content_type, self.kind)


class WorkerResponses(Message, kw_only=True):
    map: dict[str, ResponseContent] = {}


class Response(Message, kw_only=True):
    status: ResponseStatus
    message: str = ""
    content: ResponseContent | None = None

    @classmethod
    def ok(cls, message: str = "", content: ResponseContent | None = None) -> Response:
        return cls(status=ResponseStatus.OK, message=message, content=content)

    @classmethod
    def processing(cls, message: str = "", content: ResponseContent | None = None) -> Response:
        return cls(status=ResponseStatus.PROCESSING, message=message, content=content)

    @classmethod
    def failure(cls, message: str) -> Response:
        return cls(status=ResponseStatus.FAILURE, message=message)


class WorkerResponse(Message, kw_only=True):
    id: str
    status: ResponseStatus
    message: str = ""
    content: ResponseContent | None = None


class ListenersCount(Message, kw_only=True):
    """What travels in the payload beside SCM_RIGHTS fds: one address per fd, in order."""

    http: list[str] = []
    tls: list[str] = []
    tcp: list[str] = []
    udp: list[str] = []
