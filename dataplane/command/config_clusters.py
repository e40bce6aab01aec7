"""`[clusters.<id>]` tables of sozu's TOML: the cluster, its frontends and its backends.

Frontends are resolved against the listeners as sozu does: on an HTTP listener a frontend is an
HTTP route (a certificate there is an error); on an HTTPS listener it is an HTTPS route with its
own certificate or the listener's default one (neither is an error); an address no listener
declares gets one (HTTPS when the frontend has a certificate, else HTTP; TCP for a TCP cluster).
A TCP cluster's frontend on a UDP listener is a UDP frontend.

pysozu difference: frontends from TOML default to `position = "TREE"` (sozu: PRE), so
overlapping rules match most-specific-first, as CLI-created ones do (see DESIGN.md).
pysozu extension: a cluster may set `connect_timeout`, `back_timeout` (seconds) and
`sticky_name`, which replace its listener's for the requests routed to it, and the sticky
cookie's attributes in `[clusters.<id>.sticky_cookie]` (path, domain, max_age, expires,
same_site, secure, http_only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.auth_request_rules import read_auth_request
from dataplane.command.backend_tls import MAX_VERIFY_DEPTH, check_backend_tls
from dataplane.command.canary_rules import read_canary
from dataplane.command.client_auth_rules import read_client_auth
from dataplane.command.config_listeners import (
    AnyListenerConfig,
    Defaults,
    answer_map,
    auto_listener,
    hsts,
    read_certificate,
    tls_versions,
)
from dataplane.command.config_reader import Table
from dataplane.command.custom_errors_rules import read_custom_errors
from dataplane.command.messages import (
    AddBackend,
    AddCertificate,
    BackendTls,
    CertificateAndKey,
    Cluster,
    ConnectionLimit,
    CorsPolicy,
    Header,
    HeaderPosition,
    HealthCheckConfig,
    HttpsListenerConfig,
    LoadBalancingAlgorithms,
    LoadBalancingParams,
    LoadMetric,
    PathRule,
    PathRuleKind,
    ProxyProtocolConfig,
    RateLimit,
    RedirectPolicy,
    RedirectScheme,
    RequestHttpFrontend,
    RequestTcpFrontend,
    RequestUdpFrontend,
    RulePosition,
    StickyCookie,
    TcpListenerConfig,
    UdpAffinityKey,
    UdpClusterConfig,
    UdpHealthConfig,
    UdpHealthMode,
    UdpListenerConfig,
)
from dataplane.command.state_rules import (
    StateError,
    check_cookie_name,
    check_http_frontend,
    check_id,
    check_port,
    check_sticky_cookie,
    expiry_warning,
)

U32 = 2**32 - 1
PER_CERTIFICATE_VERSIONS = "the listener's tls_versions apply to every certificate"
HTTP_ONLY_FRONTEND_KEYS = (
    "method",
    "position",
    "redirect",
    "redirect_scheme",
    "redirect_template",
    "rewrite_host",
    "rewrite_path",
    "rewrite_port",
    "required_auth",
    "headers",
    "hsts",
    "tls_versions",
    "key",
    "path_type",
    "allowed_sources",
    "denied_sources",
    "rate_limits",
    "max_body_size",
    "connection_limit",
    "custom_errors",
    "canary",
    "cors",
    "auth_request",
    "client_auth",
)


@dataclass
class ClusterConfig:
    """One `[clusters.<id>]`, resolved into the requests that create it."""

    cluster: Cluster
    protocol: str  # "http" (HTTP and HTTPS) or "tcp" (TCP and UDP), as in sozu
    http_frontends: list[RequestHttpFrontend] = field(default_factory=list)
    https_frontends: list[RequestHttpFrontend] = field(default_factory=list)
    tcp_frontends: list[RequestTcpFrontend] = field(default_factory=list)
    udp_frontends: list[RequestUdpFrontend] = field(default_factory=list)
    certificates: list[AddCertificate] = field(default_factory=list)
    backends: list[AddBackend] = field(default_factory=list)
    # where each frontend and backend came from, for error messages: table name per object
    origins: dict[int, str] = field(default_factory=dict, repr=False, compare=False)


def parse_cluster(
    table: Table,
    cluster_id: str,
    listeners: dict[SocketAddress, AnyListenerConfig],
    defaults: Defaults,
) -> ClusterConfig | None:
    protocol = table.text("protocol", required=True)
    if protocol is not None and protocol.lower() not in ("http", "tcp"):
        table.error("protocol", f"unknown protocol {protocol!r}: expected http or tcp")
        protocol = None
    frontends = table.tables("frontends", required=True)
    backends = table.tables("backends", required=True)
    cluster = _cluster(table, cluster_id)
    try:
        check_id("cluster id", cluster_id)
    except StateError as error:
        table.error(None, str(error))
    if protocol is None:
        table.used.add("send_proxy")  # known; meaningless without a protocol
        table.finish(strict=True)
        return None
    config = ClusterConfig(cluster=cluster, protocol=protocol.lower())
    if config.protocol == "http":
        for front in frontends:
            _http_frontend(front, config, listeners, defaults)
        if table.has("send_proxy"):
            table.used.add("send_proxy")
            table.warn("send_proxy", "does not apply to an http cluster, ignored")
    else:
        _tcp_frontends(table, frontends, config, listeners, defaults)
        for key in (
            "sticky_session",
            "https_redirect",
            "http2",
            "answer_503",
            "sticky_name",
            "sticky_cookie",
            "backend_tls",
        ):
            if table.has(key):
                table.warn(key, "does not apply to a tcp cluster, ignored")
        cluster.sticky_session = cluster.https_redirect = False  # as sozu's TCP clusters
        cluster.http2 = cluster.answer_503 = cluster.sticky_name = cluster.sticky_cookie = None
        cluster.backend_tls = None
    for index, backend_table in enumerate(backends):
        backend = _backend(backend_table, cluster_id, index)
        if backend is not None:
            config.backends.append(backend)
            config.origins[id(backend)] = backend_table.name
    table.finish(strict=True)
    return config


def _cluster(table: Table, cluster_id: str) -> Cluster:
    answer_503_path = table.text("answer_503")
    answer_503 = (
        table.report.read_file(table.name, "answer_503", answer_503_path)
        if answer_503_path
        else None
    )
    health = table.table("health_check")
    return Cluster(
        cluster_id=cluster_id,
        sticky_session=table.flag("sticky_session", False),
        https_redirect=table.flag("https_redirect", False),
        load_balancing=table.choice(
            "load_balancing", LoadBalancingAlgorithms, LoadBalancingAlgorithms.ROUND_ROBIN
        ),
        load_metric=table.choice("load_metric", LoadMetric),
        answer_503=answer_503,
        http2=table.flag("http2"),
        answers=answer_map(table, "answers"),
        https_redirect_port=table.integer("https_redirect_port", low=1, high=65535),
        authorized_hashes=table.str_list("authorized_hashes", []),
        www_authenticate=table.text("www_authenticate"),
        max_connections_per_ip=table.integer("max_connections_per_ip"),
        retry_after=table.integer("retry_after", high=U32),
        health_check=_health_check(health) if health is not None else None,
        udp=_udp(table, http_check=health is not None),
        connect_timeout=table.integer("connect_timeout", low=1, high=U32),
        back_timeout=table.integer("back_timeout", low=1, high=U32),
        sticky_name=_sticky_name(table),
        sticky_cookie=_sticky_cookie(table),
        hash_key=table.text("hash_key"),
        backend_tls=_backend_tls(table),
    )


def _sticky_cookie(table: Table) -> StickyCookie | None:
    """pysozu extension: `[clusters.<id>.sticky_cookie]`, the sticky cookie's attributes."""
    sub = table.table("sticky_cookie")
    if sub is None:
        return None
    cookie = StickyCookie(
        path=sub.text("path", "/"),
        domain=sub.text("domain"),
        max_age=sub.integer("max_age"),
        expires=sub.integer("expires"),
        same_site=sub.text("same_site"),
        secure=sub.text("secure", "never"),
        http_only=sub.flag("http_only", False),
    )
    sub.finish(strict=True)
    try:
        check_sticky_cookie("sticky_cookie", cookie)
    except StateError as error:
        table.error("sticky_cookie", str(error))
        return None
    return cookie


def _backend_tls(cluster: Table) -> BackendTls | None:
    """pysozu extension `[clusters.<id>.backend_tls]`: TLS to the backends (PEM files)."""
    table = cluster.table("backend_tls")
    if table is None:
        return None
    files = {}
    for key in ("ca", "certificate", "key"):
        path = table.text(key)
        files[key] = table.report.read_file(table.name, key, path) if path else None
    config = BackendTls(
        server_name=table.text("server_name"),
        verify=table.flag("verify", False),
        verify_name=table.text("verify_name"),
        verify_depth=table.integer("verify_depth", low=0, high=MAX_VERIFY_DEPTH),
        ca=files["ca"],
        certificate=files["certificate"],
        key=files["key"],
    )
    table.finish(strict=True)
    try:
        check_backend_tls(Cluster(cluster_id="", http2=cluster.flag("http2"), backend_tls=config))
    except StateError as error:
        table.error(None, str(error).removeprefix("cluster : ").removeprefix("backend_tls: "))
    return config


def _sticky_name(table: Table) -> str | None:
    """pysozu extension: the cluster's own sticky cookie name (sozu: the listener's only)."""
    name = table.text("sticky_name")
    if name is None:
        return None
    try:
        check_cookie_name("cookie name", name)
    except StateError as error:
        table.error("sticky_name", str(error))
        return None
    return str(name)


def _health_check(table: Table) -> HealthCheckConfig:
    uri = table.text("uri", "/", required=True)
    if not uri.startswith("/"):
        table.error("uri", f"{uri!r} must start with /")
    config = HealthCheckConfig(
        uri=uri,
        interval=table.integer("interval", 10, low=1, high=U32),
        timeout=table.integer("timeout", 5, low=1, high=U32),
        healthy_threshold=table.integer("healthy_threshold", 3, low=1, high=U32),
        unhealthy_threshold=table.integer("unhealthy_threshold", 3, low=1, high=U32),
        expected_status=table.integer("expected_status", 0, high=599),
    )
    table.finish(strict=True)
    return config


def _udp(table: Table, http_check: bool) -> UdpClusterConfig | None:
    udp = table.table("udp")
    if udp is None:
        return None
    health_table = udp.table("health")
    health = None
    if health_table is not None:
        seconds = health_table.integer
        payload = health_table.text("udp_probe_payload")
        health = UdpHealthConfig(
            mode=health_table.choice("mode", UdpHealthMode, UdpHealthMode.TCP_PROBE),
            tcp_port=health_table.integer("tcp_port", low=1, high=65535),
            rise=health_table.integer("rise", 2, low=1, high=U32),
            fall=health_table.integer("fall", 3, low=1, high=U32),
            fail_open=health_table.flag("fail_open", True),
            udp_probe_payload=payload.encode() if payload is not None else None,
            probe_interval_seconds=seconds("probe_interval_seconds", 5, low=1, high=U32),
            probe_timeout_seconds=seconds("probe_timeout_seconds", 2, low=1, high=U32),
        )
        health_table.finish(strict=True)
        if health.mode == UdpHealthMode.UDP_PROBE and not health.udp_probe_payload:
            health_table.warn(
                "mode",
                "UDP_PROBE without udp_probe_payload: backends are probed by TCP connect "
                "(TCP_PROBE), as sozu does",
            )
        if health.mode != UdpHealthMode.HEALTH_OFF and http_check:
            health_table.warn(
                None,
                "the cluster also has a health_check: only these UDP probes are run",
            )
    config = UdpClusterConfig(
        affinity_key=udp.choice("affinity_key", UdpAffinityKey),
        responses=udp.integer("responses", high=U32),
        requests=udp.integer("requests", high=U32),
        send_proxy_protocol=udp.flag("send_proxy_protocol"),
        proxy_protocol_every_datagram=udp.flag("proxy_protocol_every_datagram"),
        health=health,
    )
    udp.finish(strict=True)
    return config


def _rate_limits(table: Table) -> list[RateLimit]:
    """`[[...frontends.rate_limits]]`: rate (per second), burst, status, exempt_sources."""
    limits = []
    for sub in table.tables("rate_limits"):
        rate = sub.number("rate")
        if not sub.has("rate"):
            sub.error("rate", "missing required key (requests per second per client address)")
        limit = dict(
            burst=sub.integer("burst", 0),
            status=sub.integer("status", 503, low=429, high=503),
            exempt_sources=sub.str_list("exempt_sources", []),
            zone=sub.text("zone"),
        )
        sub.finish(strict=True)
        if rate is not None:
            limits.append(RateLimit(rate=float(rate), **limit))
    return limits


def _connection_limit(table: Table) -> ConnectionLimit | None:
    """`connection_limit = { max_concurrent_per_client, status, exempt_sources, zone }`."""
    sub = table.table("connection_limit")
    if sub is None:
        return None
    most = sub.integer("max_concurrent_per_client", low=1, high=2**31 - 1)
    if not sub.has("max_concurrent_per_client"):
        sub.error("max_concurrent_per_client", "missing required key (requests in flight)")
    limit = ConnectionLimit(
        max_concurrent_per_client=most or 1,
        status=sub.integer("status", 503, low=429, high=503),
        exempt_sources=sub.str_list("exempt_sources", []),
        zone=sub.text("zone"),
    )
    sub.finish(strict=True)
    return limit


def _cors(table: Table) -> CorsPolicy | None:
    """`cors = { allow_origins = [...], ... }`: omitted keys take ingress-nginx's defaults."""
    sub = table.table("cors")
    if sub is None:
        return None
    defaults = CorsPolicy()
    policy = CorsPolicy(
        allow_origins=sub.str_list("allow_origins", defaults.allow_origins),
        allow_methods=sub.str_list("allow_methods", defaults.allow_methods),
        allow_headers=sub.str_list("allow_headers", defaults.allow_headers),
        expose_headers=sub.str_list("expose_headers", []),
        allow_credentials=sub.flag("allow_credentials", True),
        max_age=sub.integer("max_age", defaults.max_age, high=2**31 - 1),
    )
    sub.finish(strict=True)
    return policy


def _http_frontend(
    table: Table,
    config: ClusterConfig,
    listeners: dict[SocketAddress, AnyListenerConfig],
    defaults: Defaults,
) -> None:
    address = table.address("address", required=True)
    hostname = table.text("hostname", required=True)
    path = table.text("path", "")
    kind = table.choice("path_type", PathRuleKind, PathRuleKind.PREFIX)
    certificate, chain, key = read_certificate(table)
    versions = tls_versions(table, "tls_versions") or []
    if table.has("tls_versions"):
        table.warn("tls_versions", f"accepted but ignored: {PER_CERTIFICATE_VERSIONS}")
    headers = []
    for header in table.tables("headers"):
        position = header.choice("position", HeaderPosition)
        header_key = header.text("key", required=True)
        value = header.text("value", required=True)
        if not header.has("position"):
            header.error("position", "missing required key")
        if position is not None and header_key is not None and value is not None:
            headers.append(Header(position=position, key=header_key, val=value))
        header.finish(strict=True)
    front_hsts = hsts(table, "https")
    redirect = table.choice("redirect", RedirectPolicy)
    front = dict(
        cluster_id=config.cluster.cluster_id,
        hostname=hostname or "",
        path=PathRule(kind=kind, value=path),
        method=table.text("method"),
        position=table.choice("position", RulePosition, RulePosition.TREE),
        tags=table.str_map("tags") or {},
        redirect=redirect,
        required_auth=table.flag("required_auth"),
        redirect_scheme=table.choice("redirect_scheme", RedirectScheme),
        redirect_template=table.text("redirect_template"),
        rewrite_host=table.text("rewrite_host"),
        rewrite_path=table.text("rewrite_path"),
        rewrite_port=table.integer("rewrite_port", low=1, high=65535),
        headers=headers,
        hsts=front_hsts,
        allowed_sources=table.str_list("allowed_sources", []),
        denied_sources=table.str_list("denied_sources", []),
        rate_limits=_rate_limits(table),
        max_body_size=table.integer("max_body_size"),
        canary=read_canary(table),
        passthrough=bool(table.flag("passthrough", False)),
        cors=_cors(table),
        auth_request=read_auth_request(table),
        client_auth=read_client_auth(table),
        connection_limit=_connection_limit(table),
        custom_errors=read_custom_errors(table),
    )
    table.finish(strict=True)
    if address is None or hostname is None:
        return
    listener = listeners.get(address)
    if listener is None:
        listener = auto_listener(
            table.report,
            "https" if certificate or front["passthrough"] else "http",
            address,
            defaults,
        )
        listeners[address] = listener
    if isinstance(listener, TcpListenerConfig | UdpListenerConfig):
        kind_name = "tcp" if isinstance(listener, TcpListenerConfig) else "udp"
        table.error(
            "address", f"{address} is a {kind_name} listener; an http cluster needs http(s)"
        )
        return
    route = RequestHttpFrontend(address=address, **front)
    try:
        check_http_frontend(route)
    except StateError as error:
        table.error(None, str(error))
        return
    if not isinstance(listener, HttpsListenerConfig):
        if certificate is not None:
            table.error("certificate", f"{address} is a plain HTTP listener: no certificate there")
        if front_hsts is not None:
            table.error("hsts", "HSTS is only valid on HTTPS (RFC 6797 7.2)")
        if route.passthrough:
            table.error("passthrough", f"{address} is a plain HTTP listener: no TLS to pass")
        if route.client_auth is not None:
            table.error("client_auth", f"{address} is a plain HTTP listener: no TLS handshake")
        config.http_frontends.append(route)
        config.origins[id(route)] = table.name
        return
    if route.passthrough:  # the backends terminate TLS: no certificate here (passthrough.md)
        if certificate is not None:
            table.error("certificate", "a passthrough frontend's backends hold the certificate")
        config.https_frontends.append(route)
        config.origins[id(route)] = table.name
        return
    if certificate is None or key is None:
        if listener.certificate is None or listener.key is None:
            table.error(
                "certificate",
                f"HTTPS frontend needs a certificate: neither it nor listener {address} has one",
            )
            return
        certificate, chain, key = listener.certificate, listener.certificate_chain, listener.key
    add = AddCertificate(
        address=address,
        certificate=CertificateAndKey(
            certificate=certificate, certificate_chain=chain, key=key, versions=versions
        ),
    )
    config.certificates.append(add)
    try:
        expired = expiry_warning(add.certificate, None)
    except StateError:
        expired = None  # unparsable: the state refuses it, with the reason, when it is applied
    if expired is not None:
        table.warn("certificate", expired)
    config.https_frontends.append(route)
    config.origins[id(add)] = config.origins[id(route)] = table.name


def _tcp_frontends(
    cluster_table: Table,
    tables: list[Table],
    config: ClusterConfig,
    listeners: dict[SocketAddress, AnyListenerConfig],
    defaults: Defaults,
) -> None:
    expects: set[bool] = set()
    for table in tables:
        address = table.address("address", required=True)
        tags = table.str_map("tags") or {}
        for forbidden in ("hostname", "path", "certificate", "certificate_chain"):
            if table.has(forbidden):
                table.used.add(forbidden)
                table.error(forbidden, "not allowed on a tcp cluster's frontend")
        for key in HTTP_ONLY_FRONTEND_KEYS:
            if table.has(key):
                table.used.add(key)
                table.warn(key, "does not apply to a tcp cluster's frontend, ignored")
        table.finish(strict=True)
        if address is None:
            continue
        listener = listeners.get(address)
        if listener is None:
            listener = listeners[address] = auto_listener(table.report, "tcp", address, defaults)
        front: Any
        if isinstance(listener, UdpListenerConfig):
            front = RequestUdpFrontend(
                cluster_id=config.cluster.cluster_id, address=address, tags=tags
            )
            config.udp_frontends.append(front)
        elif isinstance(listener, TcpListenerConfig):
            expects.add(listener.expect_proxy)
            front = RequestTcpFrontend(
                cluster_id=config.cluster.cluster_id, address=address, tags=tags
            )
            config.tcp_frontends.append(front)
        else:
            table.error(
                "address", f"{address} is an http(s) listener; a tcp cluster needs tcp or udp"
            )
            continue
        config.origins[id(front)] = table.name
    if len(expects) > 1:
        cluster_table.error(
            "frontends", "frontends mix listeners with and without expect_proxy (PROXY protocol)"
        )
    send = bool(cluster_table.flag("send_proxy", False))
    expect = expects == {True}
    modes = {
        (True, True): ProxyProtocolConfig.RELAY_HEADER,
        (True, False): ProxyProtocolConfig.SEND_HEADER,
        (False, True): ProxyProtocolConfig.EXPECT_HEADER,
    }
    config.cluster.proxy_protocol = modes.get((send, expect))


def _backend(table: Table, cluster_id: str, index: int) -> AddBackend | None:
    address = table.address("address", required=True)
    weight = table.integer("weight", 100, high=255)
    backend_id = table.text("backend_id")
    sticky_id = table.text("sticky_id")
    backup = table.flag("backup")
    table.finish(strict=True)
    if address is None:
        return None
    backend_id = backend_id or f"{cluster_id}-{index}-{address}"
    try:
        check_id("backend_id", backend_id)
        check_port("backend", address)
    except StateError as error:
        table.error("backend_id" if table.has("backend_id") else "address", str(error))
        return None
    return AddBackend(
        cluster_id=cluster_id,
        backend_id=backend_id,
        address=address,
        sticky_id=sticky_id,
        load_balancing_parameters=LoadBalancingParams(weight=weight),
        backup=backup,
    )
