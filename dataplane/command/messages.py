"""The requests of the command protocol, named after sozu 2.1's `command.proto`.

Every message is a msgspec Struct whose fields are the proto fields (snake_case, same names,
same defaults). A `Request` holds exactly one verb in `request_type`, which encodes as sozu's
serde JSON does: `{"request_type": {"ADD_CLUSTER": {...}}}`. Enums are integers on the wire, as
in sozu's state files. Schema changes are additive only: new fields get defaults, so a state file
written by an older version always loads.

Build requests with the verb as a keyword, e.g.
`Request.of(add_cluster=Cluster(cluster_id="app"))`, and read the verb back with
`request.verb` / `request.body`.
"""

from __future__ import annotations

import builtins
import enum
from typing import Any

import msgspec

from dataplane.command.address import SocketAddress


class Message(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every protocol struct: unknown fields are an error, never silently dropped."""


# ---------------------------------------------------------------------------------------------
# Enums (integers on the wire, as prost/serde write them)


class ListenerType(enum.IntEnum):
    HTTP = 0
    HTTPS = 1
    TCP = 2
    UDP = 3


class RedirectPolicy(enum.IntEnum):
    FORWARD = 0
    PERMANENT = 1
    UNAUTHORIZED = 2
    FOUND = 3
    PERMANENT_REDIRECT = 4


class RedirectScheme(enum.IntEnum):
    USE_SAME = 0
    USE_HTTP = 1
    USE_HTTPS = 2


class HeaderPosition(enum.IntEnum):
    HEADER_POSITION_UNSPECIFIED = 0
    REQUEST = 1
    RESPONSE = 2
    BOTH = 3


class PathRuleKind(enum.IntEnum):
    PREFIX = 0
    REGEX = 1
    EQUALS = 2


class RulePosition(enum.IntEnum):
    PRE = 0
    POST = 1
    TREE = 2


class TlsVersion(enum.IntEnum):
    SSL_V2 = 0
    SSL_V3 = 1
    TLS_V1_0 = 2
    TLS_V1_1 = 3
    TLS_V1_2 = 4
    TLS_V1_3 = 5


class LoadBalancingAlgorithms(enum.IntEnum):
    ROUND_ROBIN = 0
    RANDOM = 1
    LEAST_LOADED = 2
    POWER_OF_TWO = 3
    HRW = 4
    MAGLEV = 5


class ProxyProtocolConfig(enum.IntEnum):
    EXPECT_HEADER = 0
    SEND_HEADER = 1
    RELAY_HEADER = 2


class LoadMetric(enum.IntEnum):
    CONNECTIONS = 0
    REQUESTS = 1
    CONNECTION_TIME = 2


class MetricsConfiguration(enum.IntEnum):
    ENABLED = 0
    DISABLED = 1
    CLEAR = 2


class MetricDetail(enum.IntEnum):
    DETAIL_PROCESS = 0
    DETAIL_FRONTEND = 1
    DETAIL_CLUSTER = 2
    DETAIL_BACKEND = 3


class UdpAffinityKey(enum.IntEnum):
    SOURCE_IP = 0
    SOURCE_IP_PORT = 1


class UdpHealthMode(enum.IntEnum):
    HEALTH_OFF = 0
    TCP_PROBE = 1
    UDP_PROBE = 2


class AccessLogFormat(enum.IntEnum):
    """sozu's ProtobufAccessLogFormat, plus JSON lines (a pysozu addition)."""

    ASCII = 1
    PROTOBUF = 2
    JSON = 3


# ---------------------------------------------------------------------------------------------
# Listeners

DEFAULT_STICKY_NAME = "SOZUBALANCEID"
# pysozu's request body rate check (HTTP listeners): at least 500 bytes/s (Apache
# mod_reqtimeout's MinRate) over each 30 s window.
DEFAULT_REQUEST_BODY_TIMEOUT = 30
DEFAULT_REQUEST_BODY_MIN_RATE = 500
DEFAULT_CIPHER_LIST = [
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]
DEFAULT_GROUPS_LIST = ["X25519MLKEM768", "x25519", "P-256", "P-384"]


class CustomHttpAnswers(Message, kw_only=True):
    """Deprecated per-status answer files (sozu keeps them beside the `answers` map)."""

    answer_301: str | None = None
    answer_400: str | None = None
    answer_401: str | None = None
    answer_404: str | None = None
    answer_408: str | None = None
    answer_413: str | None = None
    answer_421: str | None = None
    answer_502: str | None = None
    answer_503: str | None = None
    answer_504: str | None = None
    answer_507: str | None = None
    answer_429: str | None = None


class HstsConfig(Message, kw_only=True):
    enabled: bool | None = None
    max_age: int | None = None
    include_subdomains: bool | None = None
    preload: bool | None = None
    force_replace_backend: bool | None = None


class _H2Knobs(Message, kw_only=True):
    """HTTP/2 tuning knobs shared by HTTP and HTTPS listeners (None = built-in default)."""

    h2_max_rst_stream_per_window: int | None = None
    h2_max_ping_per_window: int | None = None
    h2_max_settings_per_window: int | None = None
    h2_max_empty_data_per_window: int | None = None
    h2_max_continuation_frames: int | None = None
    h2_max_glitch_count: int | None = None
    h2_initial_connection_window: int | None = None
    h2_max_concurrent_streams: int | None = None
    h2_stream_shrink_ratio: int | None = None
    h2_max_rst_stream_lifetime: int | None = None
    h2_max_rst_stream_abusive_lifetime: int | None = None
    h2_max_rst_stream_emitted_lifetime: int | None = None
    h2_max_header_list_size: int | None = None
    h2_max_header_table_size: int | None = None
    h2_stream_idle_timeout_seconds: int | None = None
    h2_graceful_shutdown_deadline_seconds: int | None = None
    h2_max_window_update_stream0_per_window: int | None = None
    h2_max_header_fields: int | None = None


class HttpListenerConfig(_H2Knobs, kw_only=True):
    address: SocketAddress
    public_address: SocketAddress | None = None
    expect_proxy: bool = False
    sticky_name: str = DEFAULT_STICKY_NAME
    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    request_timeout: int = 10
    active: bool = False
    http_answers: CustomHttpAnswers | None = None
    sozu_id_header: str | None = None
    answers: dict[str, str] = {}
    elide_x_real_ip: bool = False
    send_x_real_ip: bool = False
    # pysozu extension: peers (CIDR) whose X-Forwarded-*, Forwarded and X-Real-IP are kept and
    # appended to; any other peer's are replaced by what the proxy saw (http1/forwarding.py).
    trusted_proxies: list[str] = []
    # pysozu extension: a request body must bring at least request_body_min_rate bytes/s over
    # each window of request_body_timeout seconds, else 408 (0 in either: no such check).
    request_body_timeout: int = DEFAULT_REQUEST_BODY_TIMEOUT
    request_body_min_rate: int = DEFAULT_REQUEST_BODY_MIN_RATE
    # pysozu extension: a clear-text listener also speaks HTTP/2 with prior knowledge (h2c) to
    # clients that open with its preface (gRPC behind a TLS-terminating load balancer).
    h2c: bool = False


class HttpsListenerConfig(HttpListenerConfig):
    versions: list[TlsVersion] = []
    cipher_list: list[str] = []
    cipher_suites: list[str] = []
    signature_algorithms: list[str] = []
    groups_list: list[str] = []
    certificate: str | None = None
    certificate_chain: list[str] = []
    key: str | None = None
    send_tls13_tickets: int = 4
    alpn_protocols: list[str] = []
    strict_sni_binding: bool | None = None
    disable_http11: bool | None = None
    hsts: HstsConfig | None = None


class TcpListenerConfig(Message, kw_only=True):
    address: SocketAddress
    public_address: SocketAddress | None = None
    expect_proxy: bool = False
    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    active: bool = False


class UdpListenerConfig(Message, kw_only=True):
    address: SocketAddress
    public_address: SocketAddress | None = None
    front_timeout: int = 30
    back_timeout: int = 30
    max_rx_datagram_size: int = 1500
    max_flows: int = 0
    active: bool = False


class AlpnProtocols(Message, kw_only=True):
    values: list[str] = []


class UpdateHttpListenerConfig(_H2Knobs, kw_only=True):
    """A partial patch of a listener, keyed by address: None means keep the current value."""

    address: SocketAddress
    public_address: SocketAddress | None = None
    expect_proxy: bool | None = None
    sticky_name: str | None = None
    front_timeout: int | None = None
    back_timeout: int | None = None
    connect_timeout: int | None = None
    request_timeout: int | None = None
    http_answers: CustomHttpAnswers | None = None
    sozu_id_header: str | None = None
    answers: dict[str, str] = {}
    elide_x_real_ip: bool | None = None
    send_x_real_ip: bool | None = None
    trusted_proxies: list[str] | None = None  # pysozu extension; [] trusts no peer again
    request_body_timeout: int | None = None  # pysozu extension
    request_body_min_rate: int | None = None  # pysozu extension
    h2c: bool | None = None


class UpdateHttpsListenerConfig(UpdateHttpListenerConfig):
    alpn_protocols: AlpnProtocols | None = None
    strict_sni_binding: bool | None = None
    disable_http11: bool | None = None
    hsts: HstsConfig | None = None


class UpdateTcpListenerConfig(Message, kw_only=True):
    address: SocketAddress
    public_address: SocketAddress | None = None
    expect_proxy: bool | None = None
    front_timeout: int | None = None
    back_timeout: int | None = None
    connect_timeout: int | None = None


class UpdateUdpListenerConfig(Message, kw_only=True):
    address: SocketAddress
    public_address: SocketAddress | None = None
    front_timeout: int | None = None
    back_timeout: int | None = None
    max_rx_datagram_size: int | None = None
    max_flows: int | None = None


class ActivateListener(Message, kw_only=True):
    address: SocketAddress
    proxy: ListenerType
    from_scm: bool = False


class DeactivateListener(Message, kw_only=True):
    address: SocketAddress
    proxy: ListenerType
    to_scm: bool = False


class RemoveListener(Message, kw_only=True):
    address: SocketAddress
    proxy: ListenerType


# ---------------------------------------------------------------------------------------------
# Clusters, frontends, backends


class HealthCheckConfig(Message, kw_only=True):
    uri: str
    interval: int = 10
    timeout: int = 5
    healthy_threshold: int = 3
    unhealthy_threshold: int = 3
    expected_status: int = 0


class UdpHealthConfig(Message, kw_only=True):
    mode: UdpHealthMode | None = None
    tcp_port: int | None = None
    rise: int | None = 2
    fall: int | None = 3
    fail_open: bool | None = True
    udp_probe_payload: bytes | None = None
    probe_interval_seconds: int | None = 5
    probe_timeout_seconds: int | None = 2


class UdpClusterConfig(Message, kw_only=True):
    affinity_key: UdpAffinityKey | None = None
    responses: int | None = None
    requests: int | None = None
    send_proxy_protocol: bool | None = None
    proxy_protocol_every_datagram: bool | None = None
    health: UdpHealthConfig | None = None


class StickyCookie(Message, kw_only=True):
    """pysozu extension: the sticky cookie's attributes (sozu sends `Path=/` only).

    `expires`: seconds from the response's time, sent as an `Expires` date. `secure`: "never"
    (sozu), "always", or "https" (on requests that came over TLS, as ingress-nginx does).
    """

    path: str = "/"
    domain: str | None = None
    max_age: int | None = None  # seconds
    expires: int | None = None  # seconds from now
    same_site: str | None = None  # "Strict", "Lax" or "None"
    secure: str = "never"
    http_only: bool = False


class BackendTls(Message, kw_only=True):
    """A pysozu extension: the cluster's backends are spoken to over TLS (docs/backend-tls.md).

    ALPN offers `h2` when the cluster has `http2`, else `http/1.1`. `server_name` is sent as
    SNI (None: no SNI). With `verify`, the backend's chain must lead to a certificate of `ca`
    (PEM) within `verify_depth` intermediates, and its names must match `verify_name` (None:
    `server_name`; both None: the chain only). `certificate`/`key` (PEM): a client
    certificate for backends that ask for one."""

    server_name: str | None = None
    verify: bool = False
    verify_name: str | None = None
    verify_depth: int | None = None
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None


class Cluster(Message, kw_only=True):
    cluster_id: str
    sticky_session: bool = False
    https_redirect: bool = False
    proxy_protocol: ProxyProtocolConfig | None = None
    load_balancing: LoadBalancingAlgorithms = LoadBalancingAlgorithms.ROUND_ROBIN
    answer_503: str | None = None
    load_metric: LoadMetric | None = None
    http2: bool | None = None
    answers: dict[str, str] = {}
    https_redirect_port: int | None = None
    authorized_hashes: list[str] = []
    www_authenticate: str | None = None
    max_connections_per_ip: int | None = None
    retry_after: int | None = None
    health_check: HealthCheckConfig | None = None
    udp: UdpClusterConfig | None = None
    # pysozu extensions (sozu 2.1 has these per listener only); None: the listener's value.
    connect_timeout: int | None = None  # seconds
    back_timeout: int | None = None  # seconds
    sticky_name: str | None = None  # the sticky session cookie's name
    sticky_cookie: StickyCookie | None = None  # its attributes (None: `Path=/` as sozu)
    hash_key: str | None = None  # HRW/MAGLEV key of HTTP requests (command/hash_keys.py)
    backend_tls: BackendTls | None = None  # None: plain TCP to the backends


class PathRule(Message, kw_only=True):
    kind: PathRuleKind = PathRuleKind.PREFIX
    value: str = ""


class Header(Message, kw_only=True):
    position: HeaderPosition
    key: str
    val: str


class RateLimit(Message, kw_only=True):
    """A pysozu extension: requests per second allowed per client address on a frontend.

    nginx's `limit_req ... nodelay` (ingress-nginx's `limit-rps`/`limit-rpm`): a client may
    run `burst` requests ahead of `rate`; beyond, it is answered `status`. `exempt_sources`
    (CIDRs) are never limited. Counted by each worker on its own connections."""

    rate: float
    burst: int = 0
    status: int = 503
    exempt_sources: list[str] = []
    # Frontends whose limits name the same zone (with the same rate, burst, status and exempt
    # sources) count a client once, together (nginx's limit_req_zone; an Ingress's routes).
    zone: str | None = None


class ConnectionLimit(Message, kw_only=True):
    """A pysozu extension: requests in flight allowed per client address on a frontend.

    nginx's `limit_conn` (ingress-nginx's `limit-connections`): a request counts from routing
    to the end of its response (an HTTP/2 stream alike); one more is answered `status`.
    `exempt_sources` (CIDRs) are never limited; a `zone` is shared as a RateLimit's is."""

    max_concurrent_per_client: int
    status: int = 503
    exempt_sources: list[str] = []
    zone: str | None = None


class CustomErrors(Message, kw_only=True):
    """A pysozu extension: error pages served by another cluster (ingress-nginx's
    `custom-http-errors`, docs/custom-errors.md). A backend response with a status in `codes`
    is dropped; the request is served by `cluster_id` instead: a GET of / with X-Code,
    X-Format, X-Original-URI, X-Request-ID and the static `headers`."""

    codes: list[int]
    cluster_id: str
    headers: dict[str, str] = {}


class Canary(Message, kw_only=True):
    """A pysozu extension: a frontend's canary alternative (ingress-nginx's canary Ingress).

    Per request, in this order: a `header` naming the request header (with `header_value`
    exact, or `header_pattern` a regex searched in it; without either, "always"/"never"),
    then a `cookie` ("always"/"never"), then a random draw: `weight` in `weight_total`.
    A request that the rule sends to the canary is served by `cluster_id` (docs/canary.md)."""

    cluster_id: str
    header: str | None = None
    header_value: str | None = None
    header_pattern: str | None = None
    cookie: str | None = None
    weight: int = 0
    weight_total: int = 100


CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
CORS_HEADERS = (
    *("DNT", "Keep-Alive", "User-Agent", "X-Requested-With", "If-Modified-Since"),
    *("Cache-Control", "Content-Type", "Range", "Authorization"),
)


class CorsPolicy(Message, kw_only=True):
    """A pysozu extension: Cross-Origin Resource Sharing answered by the proxy (docs/cors.md).

    ingress-nginx's `enable-cors` and `cors-*`: `allow_origins` holds `*`, `null`, exact
    origins (`https://a.example:8443`) or one-level wildcards (`https://*.example.com`).
    Defaults are ingress-nginx's."""

    allow_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    allow_methods: list[str] = msgspec.field(default_factory=lambda: list(CORS_METHODS))
    allow_headers: list[str] = msgspec.field(default_factory=lambda: list(CORS_HEADERS))
    expose_headers: list[str] = []
    allow_credentials: bool = True
    max_age: int = 1_728_000  # seconds


class AuthRequest(Message, kw_only=True):
    """A pysozu extension: ask the cluster `cluster_id` first (ingress-nginx's `auth-url`, nginx's
    `auth_request`). Each request sends `method` `path` (query included) there with its
    headers and no body; a 2xx lets it through with `response_headers` copied from that
    answer, a 401/403 is the client's answer (a 401 becomes a 302 to `signin` when set, its
    `signin_redirect_param` carrying the original URL), anything else a 500
    (docs/access-control.md, "External authorisation")."""

    cluster_id: str
    path: str = "/"
    method: str = "GET"
    response_headers: list[str] = []
    signin: str | None = None
    signin_redirect_param: str = "rd"
    request_redirect: str | None = None  # X-Auth-Request-Redirect (default: the request's URI)
    host: str | None = None  # the sub-request's Host (default: the request's own)


class ClientAuth(Message, kw_only=True):
    """A pysozu extension: client certificates on an HTTPS frontend (docs/client-certificates.md,
    ingress-nginx's `auth-tls-*`). `verify`: `on` (a certificate is required), `optional`
    (verified when sent), `optional_no_ca` (answered 503: Python's ssl cannot accept an
    unverified certificate). `ca` and `crl` are PEM."""

    ca: str
    crl: str | None = None
    verify: str = "on"
    verify_depth: int = 1
    error_page: str | None = None  # a 302 there instead of the 400
    pass_certificate: bool = False  # the `ssl-client-cert` header (URL-encoded PEM)
    match_cn: str | None = None  # a regex the subject DN must match, else 403


class RequestHttpFrontend(Message, kw_only=True):
    """An HTTP or HTTPS route. No cluster_id means a deny route (401).

    `allowed_sources`, `denied_sources`, `rate_limits` and `max_body_size` are pysozu
    extensions (docs/access-control.md): source lists answer 403, rate limits their status,
    a body over `max_body_size` bytes 413."""

    cluster_id: str | None = None
    address: SocketAddress
    hostname: str
    path: PathRule = msgspec.field(default_factory=PathRule)
    method: str | None = None
    position: RulePosition = RulePosition.TREE
    tags: dict[str, str] = {}
    redirect: RedirectPolicy | None = None
    required_auth: bool | None = None
    redirect_scheme: RedirectScheme | None = None
    redirect_template: str | None = None
    rewrite_host: str | None = None
    rewrite_path: str | None = None
    rewrite_port: int | None = None
    headers: list[Header] = []
    hsts: HstsConfig | None = None
    allowed_sources: list[str] = []
    denied_sources: list[str] = []
    rate_limits: list[RateLimit] = []
    max_body_size: int | None = None
    canary: Canary | None = None
    passthrough: bool = False  # pysozu: TLS passthrough by SNI (docs/tls-passthrough.md)
    cors: CorsPolicy | None = None  # pysozu extension (docs/cors.md)
    auth_request: AuthRequest | None = None
    client_auth: ClientAuth | None = None  # pysozu extension (docs/client-certificates.md)
    connection_limit: ConnectionLimit | None = None  # pysozu (docs/access-control.md)
    custom_errors: CustomErrors | None = None  # pysozu (docs/custom-errors.md)


class RequestTcpFrontend(Message, kw_only=True):
    cluster_id: str
    address: SocketAddress
    tags: dict[str, str] = {}


class RequestUdpFrontend(Message, kw_only=True):
    cluster_id: str
    address: SocketAddress
    tags: dict[str, str] = {}


class LoadBalancingParams(Message, kw_only=True):
    weight: int


class AddBackend(Message, kw_only=True):
    cluster_id: str
    backend_id: str
    address: SocketAddress
    sticky_id: str | None = None
    load_balancing_parameters: LoadBalancingParams | None = None
    backup: bool | None = None


class RemoveBackend(Message, kw_only=True):
    cluster_id: str
    backend_id: str
    address: SocketAddress


class SetHealthCheck(Message, kw_only=True):
    cluster_id: str
    config: HealthCheckConfig


class QueryHealthChecks(Message, kw_only=True):
    cluster_id: str | None = None


# ---------------------------------------------------------------------------------------------
# Certificates


class CertificateAndKey(Message, kw_only=True):
    certificate: str
    certificate_chain: list[str] = []
    key: str
    versions: list[TlsVersion] = []
    names: list[str] = []


class AddCertificate(Message, kw_only=True):
    address: SocketAddress
    certificate: CertificateAndKey
    expired_at: int | None = None


class RemoveCertificate(Message, kw_only=True):
    address: SocketAddress
    fingerprint: str


class ReplaceCertificate(Message, kw_only=True):
    address: SocketAddress
    new_certificate: CertificateAndKey
    old_fingerprint: str
    new_expired_at: int | None = None


class QueryCertificatesFilters(Message, kw_only=True):
    domain: str | None = None
    fingerprint: str | None = None


# ---------------------------------------------------------------------------------------------
# Queries and lifecycle


class Empty(Message, kw_only=True):
    """The payload of verbs that carry nothing (`Status {}`, `SoftStop {}`...)."""


class FrontendFilters(Message, kw_only=True):
    http: bool = False
    https: bool = False
    tcp: bool = False
    domain: str | None = None


class QueryClusterByDomain(Message, kw_only=True):
    hostname: str
    path: str | None = None


class QueryMetricsOptions(Message, kw_only=True):
    # `list` is a proto field name: the annotations below must not see it as the builtin.
    cluster_ids: builtins.list[str] = []
    backend_ids: builtins.list[str] = []
    metric_names: builtins.list[str] = []
    list: bool = False
    no_clusters: bool = False
    workers: bool = False


class SetMetricDetail(Message, kw_only=True):
    client_id: str
    detail: MetricDetail | None = None
    ttl_seconds: int | None = None
    clear: bool | None = None
    reason: str | None = None
    peer_pid: int | None = None
    peer_session_ulid: str | None = None


class SetHealthProber(Message, kw_only=True):
    """Worker-only (pysozu): main names the one worker that runs the health probes."""

    active: bool = False


class SetBackendHealth(Message, kw_only=True):
    """Worker-only (pysozu): the prober's verdict on one backend, relayed by main."""

    cluster_id: str
    backend_id: str
    address: SocketAddress
    healthy: bool


class HardStopOptions(Message, kw_only=True):
    """pysozu extension point for SoftStop/HardStop: an optional drain deadline in seconds."""

    deadline_seconds: int | None = None


# ---------------------------------------------------------------------------------------------
# Worker boot configuration (first message on a worker's channel)


class ServerMetricsConfig(Message, kw_only=True):
    address: str
    tagged_metrics: bool = False
    prefix: str | None = None
    detail: MetricDetail | None = None


class ServerConfig(Message, kw_only=True):
    max_connections: int = 10000
    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    zombie_check_interval: int = 1800
    accept_queue_timeout: int = 60
    min_buffers: int = 1
    max_buffers: int = 1000
    buffer_size: int = 16393
    log_level: str = "info"
    log_target: str = "stdout"
    access_logs_target: str | None = None
    command_buffer_size: int = 1_000_000
    max_command_buffer_size: int = 2_000_000
    metrics: ServerMetricsConfig | None = None
    access_log_format: AccessLogFormat = AccessLogFormat.ASCII
    log_colored: bool = False
    audit_logs_target: str | None = None
    audit_logs_json_target: str | None = None
    slab_entries_per_connection: int | None = None
    basic_auth_max_credential_bytes: int | None = None
    evict_on_queue_full: bool | None = False
    max_connections_per_ip: int | None = 0
    retry_after: int | None = 60
    splice_pipe_capacity_bytes: int | None = None
    # pysozu additions
    version: str | None = None
    access_logs_colored: bool | None = None  # None: as log_colored


# ---------------------------------------------------------------------------------------------
# The request envelope


class RequestType(Message, kw_only=True, rename="upper", omit_defaults=True):
    """sozu's `oneof request_type`: exactly one field is set."""

    save_state: str | None = None
    load_state: str | None = None
    list_workers: Empty | None = None
    list_frontends: FrontendFilters | None = None
    list_listeners: Empty | None = None
    launch_worker: str | None = None
    upgrade_main: Empty | None = None
    upgrade_worker: int | None = None
    subscribe_events: Empty | None = None
    reload_configuration: str | None = None
    status: Empty | None = None
    add_cluster: Cluster | None = None
    remove_cluster: str | None = None
    add_http_frontend: RequestHttpFrontend | None = None
    remove_http_frontend: RequestHttpFrontend | None = None
    add_https_frontend: RequestHttpFrontend | None = None
    remove_https_frontend: RequestHttpFrontend | None = None
    add_certificate: AddCertificate | None = None
    replace_certificate: ReplaceCertificate | None = None
    remove_certificate: RemoveCertificate | None = None
    add_tcp_frontend: RequestTcpFrontend | None = None
    remove_tcp_frontend: RequestTcpFrontend | None = None
    add_backend: AddBackend | None = None
    remove_backend: RemoveBackend | None = None
    add_http_listener: HttpListenerConfig | None = None
    add_https_listener: HttpsListenerConfig | None = None
    add_tcp_listener: TcpListenerConfig | None = None
    remove_listener: RemoveListener | None = None
    activate_listener: ActivateListener | None = None
    deactivate_listener: DeactivateListener | None = None
    query_cluster_by_id: str | None = None
    query_clusters_by_domain: QueryClusterByDomain | None = None
    query_clusters_hashes: Empty | None = None
    query_metrics: QueryMetricsOptions | None = None
    soft_stop: HardStopOptions | None = None
    hard_stop: HardStopOptions | None = None
    configure_metrics: MetricsConfiguration | None = None
    logging: str | None = None
    return_listen_sockets: Empty | None = None
    query_certificates_from_the_state: QueryCertificatesFilters | None = None
    query_certificates_from_workers: QueryCertificatesFilters | None = None
    count_requests: Empty | None = None
    update_http_listener: UpdateHttpListenerConfig | None = None
    update_https_listener: UpdateHttpsListenerConfig | None = None
    update_tcp_listener: UpdateTcpListenerConfig | None = None
    set_max_connections_per_ip: int | None = None
    query_max_connections_per_ip: Empty | None = None
    set_health_check: SetHealthCheck | None = None
    remove_health_check: str | None = None
    query_health_checks: QueryHealthChecks | None = None
    set_metric_detail: SetMetricDetail | None = None
    add_udp_listener: UdpListenerConfig | None = None
    update_udp_listener: UpdateUdpListenerConfig | None = None
    add_udp_frontend: RequestUdpFrontend | None = None
    remove_udp_frontend: RequestUdpFrontend | None = None
    # pysozu, worker-only (WORKER_ONLY_VERBS)
    set_health_prober: SetHealthProber | None = None
    set_backend_health: SetBackendHealth | None = None

    def __post_init__(self) -> None:
        set_fields = [name for name in self.__struct_fields__ if getattr(self, name) is not None]
        if len(set_fields) != 1:
            raise ValueError(
                f"request_type must hold exactly one verb, got {len(set_fields)}"
                + (f" ({', '.join(set_fields)})" if set_fields else "")
            )


VERBS: tuple[str, ...] = RequestType.__struct_fields__
"""Every verb name, snake_case, in proto order."""

VERB_TYPES: dict[str, Any] = {
    name: RequestType.__annotations__[name] for name in RequestType.__struct_fields__
}


class Request(Message, kw_only=True):
    request_type: RequestType

    @classmethod
    def of(cls, **verb: Any) -> Request:
        """`Request.of(add_cluster=Cluster(...))`: a request holding one verb."""
        return cls(request_type=RequestType(**verb))

    @property
    def verb(self) -> str:
        for name in self.request_type.__struct_fields__:
            if getattr(self.request_type, name) is not None:
                return name
        raise AssertionError("unreachable: RequestType holds exactly one verb")

    @property
    def body(self) -> Any:
        return getattr(self.request_type, self.verb)

    def __repr__(self) -> str:
        return f"Request({self.verb}={self.body!r})"


class WorkerRequest(Message, kw_only=True):
    id: str
    content: Request


# Verbs that change the routing state (applied to ConfigState, fanned out, saved).
STATE_VERBS = frozenset(
    {
        "add_cluster",
        "remove_cluster",
        "add_http_frontend",
        "remove_http_frontend",
        "add_https_frontend",
        "remove_https_frontend",
        "add_tcp_frontend",
        "remove_tcp_frontend",
        "add_udp_frontend",
        "remove_udp_frontend",
        "add_backend",
        "remove_backend",
        "add_http_listener",
        "add_https_listener",
        "add_tcp_listener",
        "add_udp_listener",
        "update_http_listener",
        "update_https_listener",
        "update_tcp_listener",
        "update_udp_listener",
        "remove_listener",
        "activate_listener",
        "deactivate_listener",
        "add_certificate",
        "replace_certificate",
        "remove_certificate",
        "set_health_check",
        "remove_health_check",
    }
)

# Verbs main sends to its workers only: refused from command-socket clients, never in a state.
WORKER_ONLY_VERBS = frozenset({"return_listen_sockets", "set_health_prober", "set_backend_health"})
