"""sozu's TOML configuration: defaults, the sample file, listeners, clusters, every error."""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.config import (
    Config,
    ConfigError,
    ConfigProblem,
    default_config,
    load_config,
    parse_config,
)
from dataplane.command.messages import (
    AccessLogFormat,
    HttpListenerConfig,
    HttpsListenerConfig,
    LoadBalancingAlgorithms,
    LoadMetric,
    MetricDetail,
    PathRuleKind,
    ProxyProtocolConfig,
    RedirectPolicy,
    RedirectScheme,
    RulePosition,
    TcpListenerConfig,
    TlsVersion,
    UdpListenerConfig,
)
from dataplane.command.state import ConfigState, certificate_fingerprint

FIXTURES = Path(__file__).parent / "fixtures" / "config"
HTTP_CLUSTER = """
[clusters.app]
protocol = "http"
frontends = [{ address = "127.0.0.1:8080", hostname = "example.com" }]
backends = [{ address = "127.0.0.1:9000" }]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.toml")
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    return [str(problem).removeprefix("config.toml: ") for problem in caught.value.problems]


def warnings(config: Config) -> list[str]:
    return [warning.removeprefix("config.toml: ") for warning in config.warnings]


def replayed(config: Config) -> ConfigState:
    """The state the configuration builds; routing_state replays its requests."""
    state = config.routing_state()
    rebuilt = ConfigState()
    for request in config.generate_requests():
        rebuilt.dispatch(request)
    assert rebuilt == state
    return state


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A directory holding the fixture certificates, for configs that name them."""
    for name in os.listdir(FIXTURES):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "config.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# defaults and the embedded configuration


def test_top_level_defaults_are_sozus() -> None:
    config = parse_config("")
    assert config.command_socket == os.path.abspath("sozu.sock")
    assert (config.command_buffer_size, config.max_command_buffer_size) == (1_000_000, 2_000_000)
    assert (config.worker_count, config.worker_timeout, config.ctl_command_timeout) == (2, 10, 1000)
    assert config.worker_automatic_restart and config.activate_listeners
    assert (config.max_connections, config.min_buffers, config.max_buffers) == (10_000, 1, 1000)
    assert config.buffer_size == 16_393
    timeouts = (config.front_timeout, config.back_timeout, config.connect_timeout)
    assert (*timeouts, config.request_timeout) == (60, 30, 3, 10)
    assert (config.zombie_check_interval, config.accept_queue_timeout) == (1800, 60)
    assert (config.max_connections_per_ip, config.retry_after) == (0, 60)
    assert config.basic_auth_max_credential_bytes == 4096
    assert (config.log_level, config.log_target) == ("info", "stdout")
    assert config.access_logs_format == AccessLogFormat.ASCII
    assert config.saved_state is None and not config.automatic_state_save
    assert config.metrics is None and config.prometheus_address is None
    assert config.listeners == [] and config.clusters == {} and config.warnings == []
    assert config.generate_requests() == []


def test_embedded_default() -> None:
    config = default_config()
    assert config.source == "<embedded default>"
    assert config.worker_count == 2
    assert config.command_socket == os.path.abspath("sozu.sock")
    assert config.warnings == []
    (listener,) = config.listeners
    assert type(listener) is HttpListenerConfig and str(listener.address) == "127.0.0.1:8080"
    demo = config.clusters["demo"]
    assert demo.cluster.load_balancing == LoadBalancingAlgorithms.ROUND_ROBIN
    (front,) = demo.http_frontends
    assert (front.hostname, front.path.kind, front.path.value) == ("*", PathRuleKind.PREFIX, "/")
    assert [str(b.address) for b in demo.backends] == ["127.0.0.1:18081", "127.0.0.1:18082"]
    assert [r.verb for r in config.generate_requests()] == [
        "add_http_listener",
        "add_cluster",
        "add_http_frontend",
        "add_backend",
        "add_backend",
        "activate_listener",
    ]
    assert replayed(config).http_listeners[listener.address].active


def test_server_config_carries_the_top_level_values() -> None:
    config = parse_config(
        'max_connections = 42\nlog_level = "debug"\n[metrics]\naddress = "127.0.0.1:8125"'
    )
    server = config.server_config()
    assert (server.max_connections, server.log_level) == (42, "debug")
    assert server.metrics is not None and server.metrics.address == "127.0.0.1:8125"
    assert server.metrics.prefix == "sozu" and server.metrics.detail == MetricDetail.DETAIL_CLUSTER


# ---------------------------------------------------------------------------------------------
# sozu's sample configuration


def test_sozu_sample_loads_unchanged() -> None:
    config = load_config(FIXTURES / "sozu_sample.toml")
    assert config.source.endswith("sozu_sample.toml")
    assert config.command_socket == str(FIXTURES / "sozu.sock")
    assert config.saved_state == str(FIXTURES / "state.json")
    assert (config.command_buffer_size, config.max_command_buffer_size) == (16384, 163840)
    assert config.max_connections == 500
    assert (
        f"{FIXTURES / 'sozu_sample.toml'}: handle_process_affinity: accepted but ignored: "
        "pysozu does not pin workers to CPU cores"
    ) in config.warnings
    assert not [w for w in config.warnings if "[metrics]" in w]  # the StatsD drain works
    # its TCP listener and frontend are served, without a warning
    assert not any("8081" in warning for warning in config.warnings)
    verbs = [r.verb for r in config.generate_requests()]
    assert verbs.count("add_tcp_listener") == verbs.count("add_tcp_frontend") == 1
    http, https, tcp = config.listeners
    assert type(http) is HttpListenerConfig and http.front_timeout == 55  # the top-level value
    assert http.answers["503"].startswith("HTTP/1.1 503 Service Unavailable\r\n")
    assert isinstance(https, HttpsListenerConfig)
    assert https.versions == [TlsVersion.TLS_V1_2, TlsVersion.TLS_V1_3]
    assert https.alpn_protocols == ["h2", "http/1.1"] and len(https.cipher_list) == 3
    assert https.hsts is not None and https.hsts.max_age == 31_536_000
    assert isinstance(tcp, TcpListenerConfig)

    app = config.clusters["MyCluster"]
    assert app.cluster.load_metric == LoadMetric.CONNECTIONS
    assert app.cluster.health_check is not None and app.cluster.health_check.uri == "/health"
    (plain,) = app.http_frontends
    assert plain.path.value == "/api" and plain.tags == {"key": "value"}
    assert plain.position == RulePosition.TREE  # pysozu difference: sozu would use PRE
    (secure,) = app.https_frontends
    (certificate,) = app.certificates
    assert certificate.certificate.certificate_chain == [
        (FIXTURES / "certificate_chain.pem").read_text()
    ]
    assert [b.backend_id for b in app.backends] == ["the-backend-to-my-app"]
    tcp_cluster = config.clusters["TcpTest"]
    assert tcp_cluster.tcp_frontends[0].tags["owner"] == "John"
    assert [b.backend_id for b in tcp_cluster.backends] == [
        "TcpTest-0-127.0.0.1:4000",
        "TcpTest-1-127.0.0.1:4001",
    ]
    assert [b.load_balancing_parameters.weight for b in tcp_cluster.backends] == [100, 50]
    assert tcp_cluster.cluster.proxy_protocol is None

    state = replayed(config)
    assert len(state.certificates[secure.address]) == 1
    assert all(listener.active for listener in state.http_listeners.values())
    assert set(state.clusters) == {"MyCluster", "TcpTest"}


# ---------------------------------------------------------------------------------------------
# listeners


def test_listener_protocols_and_defaults() -> None:
    config = parse_config(
        """
        connect_timeout = 7
        [[listeners]]
        protocol = "udp"
        address = "127.0.0.1:53"
        max_flows = 10
        [[listeners]]
        protocol = "tcp"
        address = "127.0.0.1:54"
        [[listeners]]
        protocol = "HTTPS"
        address = "[::1]:443"
        """
    )
    udp, tcp, https = config.listeners
    assert isinstance(udp, UdpListenerConfig)
    assert (udp.front_timeout, udp.back_timeout, udp.max_rx_datagram_size, udp.max_flows) == (
        30,
        30,
        1500,
        10,
    )
    assert isinstance(tcp, TcpListenerConfig) and tcp.connect_timeout == 7
    assert isinstance(https, HttpsListenerConfig) and str(https.address) == "[::1]:443"
    assert https.alpn_protocols == ["h2", "http/1.1"] and https.send_tls13_tickets == 4
    assert https.versions == [TlsVersion.TLS_V1_2, TlsVersion.TLS_V1_3]


def test_listener_default_certificate_serves_frontends_without_one(config_dir: Path) -> None:
    config = load_config(
        write(
            config_dir,
            """
            [[listeners]]
            protocol = "https"
            address = "127.0.0.1:8443"
            certificate = "certificate.pem"
            key = "key.pem"
            [clusters.a]
            protocol = "http"
            frontends = [{ address = "127.0.0.1:8443", hostname = "lolcatho.st" }]
            backends = []
            [clusters.b]
            protocol = "http"
            frontends = [{ address = "127.0.0.1:8443", hostname = "www.lolcatho.st" }]
            backends = []
            """,
        )
    )
    verbs = [r.verb for r in config.generate_requests()]
    assert verbs.count("add_certificate") == 1  # the shared certificate is added once
    state = replayed(config)
    fingerprint = certificate_fingerprint((FIXTURES / "certificate.pem").read_text())
    assert list(state.certificates[SocketAddress.parse("127.0.0.1:8443")]) == [fingerprint]


def test_listener_errors() -> None:
    assert problems(
        """
        [[listeners]]
        protocol = "htp"
        address = "127.0.0.1:80"
        [[listeners]]
        address = "127.0.0.1:81"
        front_timeout = 5
        [[listeners]]
        protocol = "http"
        address = "somewhere:80"
        [[listeners]]
        protocol = "http"
        address = "127.0.0.1:82"
        front_timeout = "60"
        colour = "blue"
        [listeners.hsts]
        enabled = true
        [[listeners]]
        protocol = "udp"
        address = "127.0.0.1:83"
        expect_proxy = true
        [[listeners]]
        protocol = "https"
        address = "127.0.0.1:84"
        alpn_protocols = ["h3"]
        tls_versions = ["TLS_V14"]
        certificate = "missing.pem"
        [[listeners]]
        protocol = "tcp"
        address = "127.0.0.1:82"
        [[listeners]]
        protocol = "http"
        address = "127.0.0.1:85"
        expect_proxy = true
        public_address = "1.2.3.4:80"
        """
    ) == [
        "[listeners.0] protocol: unknown protocol 'htp': expected http, https, tcp or udp",
        "[listeners.1] protocol: missing required key",
        "[listeners.2] address: invalid socket address 'somewhere:80': 'somewhere' is not an IP",
        "[listeners.3] front_timeout: expected an integer, got the string '60'",
        "[listeners.3] hsts: HSTS is only valid on HTTPS (RFC 6797 7.2)",
        "[listeners.3] colour: unknown key",
        "[listeners.4] expect_proxy: PROXY protocol is not supported on UDP listeners",
        f"[listeners.5] certificate: cannot read {os.path.abspath('missing.pem')}: "
        "No such file or directory",
        "[listeners.5] key: certificate and key must be given together",
        "[listeners.5] alpn_protocols: 'h3' is not one of h2, http/1.1",
        "[listeners.5] tls_versions: unknown TLS version 'TLS_V14': expected TLS_V12 or TLS_V13",
        "[listeners.6] address: 127.0.0.1:82 is already used by another listener",
        "[listeners.7] public_address: public_address cannot be combined with expect_proxy",
    ]


def test_keys_for_another_protocol_are_warned_about() -> None:
    config = parse_config(
        '[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:80"\ncipher_list = ["X"]\n',
        "config.toml",
    )
    assert warnings(config) == [
        "[listeners.0] cipher_list: does not apply to a http listener, ignored"
    ]


def test_request_body_rate_keys_are_read_with_defaults() -> None:
    config = parse_config(
        '[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:80"\n'
        "request_body_timeout = 5\nrequest_body_min_rate = 0\n"
        '[[listeners]]\nprotocol = "https"\naddress = "127.0.0.1:443"\n'
        '[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:81"\n'
        "request_body_min_rate = 10\n",
        "config.toml",
    )
    http, https = config.listeners[0], config.listeners[1]
    assert isinstance(http, HttpListenerConfig) and isinstance(https, HttpsListenerConfig)
    assert (http.request_body_timeout, http.request_body_min_rate) == (5, 0)
    assert (https.request_body_timeout, https.request_body_min_rate) == (30, 500)
    assert "[listeners.2] request_body_min_rate: does not apply to a tcp listener, ignored" in (
        warnings(config)
    )
    with pytest.raises(ConfigError, match="request_body_timeout: -1 is out of range"):
        parse_config(
            '[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:80"\n'
            "request_body_timeout = -1\n",
            "config.toml",
        )


def test_trusted_proxies_are_read_and_checked() -> None:
    config = parse_config(
        '[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:80"\n'
        'trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]\n'
        '[[listeners]]\nprotocol = "https"\naddress = "127.0.0.1:443"\n'
        'trusted_proxies = ["127.0.0.1"]\n'
        '[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:81"\n'
        'trusted_proxies = ["127.0.0.1"]\n',
        "config.toml",
    )
    http, https = config.listeners[0], config.listeners[1]
    assert isinstance(http, HttpListenerConfig) and isinstance(https, HttpsListenerConfig)
    assert http.trusted_proxies == ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
    assert https.trusted_proxies == ["127.0.0.1"]
    assert "[listeners.2] trusted_proxies: does not apply to a tcp listener, ignored" in warnings(
        config
    )
    no_list = parse_config('[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:80"\n')
    assert no_list.listeners[0].trusted_proxies == []  # type: ignore[union-attr]
    assert problems(
        '[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:80"\n'
        'trusted_proxies = ["10.0.0.1/8", "proxy.example", "::ffff:10.0.0.0/104"]\n'
        '[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:81"\n'
        'trusted_proxies = "10.0.0.0/8"\n'
    ) == [
        "[listeners.0] trusted_proxies: '10.0.0.1/8' has bits set after its prefix length: "
        "write 10.0.0.0/8 (or the one address alone)",
        "[listeners.0] trusted_proxies: 'proxy.example' is not an IP network "
        "(CIDR such as 10.0.0.0/8)",
        "[listeners.0] trusted_proxies: '::ffff:10.0.0.0/104' is IPv4-mapped: write it as IPv4, "
        "peers are matched so",
        "[listeners.1] trusted_proxies: expected an array of strings, got the string '10.0.0.0/8'",
    ]


@pytest.mark.parametrize("protocol", ["http", "https"])
def test_expect_proxy_on_http_and_https_is_read_without_a_warning(protocol: str) -> None:
    config = parse_config(
        f'[[listeners]]\nprotocol = "{protocol}"\naddress = "127.0.0.1:80"\nexpect_proxy = true\n',
        "config.toml",
    )
    assert config.listeners[0].expect_proxy is True
    assert warnings(config) == []


def test_h2_needs_a_large_enough_buffer() -> None:
    assert problems(
        'buffer_size = 4096\n[[listeners]]\nprotocol = "https"\naddress = "127.0.0.1:443"'
    ) == [
        "buffer_size: 4096 is below 16393, the minimum for HTTP/2 "
        "(advertised by 1 HTTPS listener(s))"
    ]
    parse_config(
        'buffer_size = 4096\n[[listeners]]\nprotocol = "https"\naddress = "127.0.0.1:443"\n'
        'alpn_protocols = ["http/1.1"]'
    )


# ---------------------------------------------------------------------------------------------
# clusters, frontends, backends


def test_frontends_create_their_listeners(config_dir: Path) -> None:
    config = load_config(
        write(
            config_dir,
            """
            [clusters.web]
            protocol = "http"
            backends = [{ address = "127.0.0.1:9000", weight = 10, sticky_id = "s", backup = true }]
            [[clusters.web.frontends]]
            address = "127.0.0.1:80"
            hostname = "lolcatho.st"
            [[clusters.web.frontends]]
            address = "127.0.0.1:443"
            hostname = "lolcatho.st"
            certificate = "certificate.pem"
            key = "key.pem"
            [clusters.db]
            protocol = "tcp"
            send_proxy = true
            frontends = [{ address = "127.0.0.1:5432" }]
            backends = [{ address = "10.0.0.1:5432", backend_id = "primary" }]
            """,
        )
    )
    kinds = {str(listener.address): type(listener).__name__ for listener in config.listeners}
    assert kinds == {
        "127.0.0.1:80": "HttpListenerConfig",
        "127.0.0.1:443": "HttpsListenerConfig",
        "127.0.0.1:5432": "TcpListenerConfig",
    }
    web = config.clusters["web"]
    (backend,) = web.backends
    assert backend.backend_id == "web-0-127.0.0.1:9000"
    assert (backend.load_balancing_parameters.weight, backend.sticky_id, backend.backup) == (
        10,
        "s",
        True,
    )
    assert config.clusters["db"].cluster.proxy_protocol == ProxyProtocolConfig.SEND_HEADER
    state = replayed(config)
    assert len(state.http_fronts) == len(state.https_fronts) == 1
    assert [str(address) for address in state.tcp_fronts] == ["127.0.0.1:5432"]
    assert not any("send_proxy" in w for w in config.warnings)  # served: no warning


def test_frontend_options() -> None:
    config = parse_config(
        """
        [clusters.app]
        protocol = "http"
        load_balancing = "maglev"
        load_metric = "CONNECTION_TIME"
        sticky_session = true
        answers = { "503" = "busy" }
        authorized_hashes = ["user:abcdefghijklm"]  # a crypt(3) hash
        backends = []
        [[clusters.app.frontends]]
        address = "127.0.0.1:80"
        hostname = "example.com"
        path = "^/api/[0-9]+$"
        path_type = "REGEX"
        method = "POST"
        position = "PRE"
        redirect = "permanent"
        redirect_scheme = "use-https"
        rewrite_host = "$HOST[1]"
        rewrite_port = 8443
        required_auth = true
        tags = { team = "x" }
        [[clusters.app.frontends.headers]]
        position = "response"
        key = "X-Served-By"
        value = "pysozu"
        """
    )
    cluster = config.clusters["app"].cluster
    assert cluster.load_balancing == LoadBalancingAlgorithms.MAGLEV
    assert cluster.load_metric == LoadMetric.CONNECTION_TIME
    assert cluster.answers == {"503": "busy"}
    assert cluster.authorized_hashes == ["user:abcdefghijklm"]
    (front,) = config.clusters["app"].http_frontends
    assert (front.path.kind, front.method, front.position) == (
        PathRuleKind.REGEX,
        "POST",
        RulePosition.PRE,
    )
    assert (front.redirect, front.redirect_scheme) == (
        RedirectPolicy.PERMANENT,
        RedirectScheme.USE_HTTPS,
    )
    assert (front.rewrite_host, front.rewrite_port, front.required_auth) == ("$HOST[1]", 8443, True)
    assert [(h.key, h.val) for h in front.headers] == [("X-Served-By", "pysozu")]


def test_answers_files_are_read_relative_to_the_config(config_dir: Path) -> None:
    config = load_config(
        write(
            config_dir,
            """
            [[listeners]]
            protocol = "http"
            address = "127.0.0.1:80"
            answers = { "503" = "file://answer_503.http", "404" = "not here" }
            """,
        )
    )
    answers = config.listeners[0].answers
    with open(FIXTURES / "answer_503.http", newline="") as expected:
        assert answers["503"] == expected.read()
    assert answers["503"].startswith("HTTP/1.1 503 Service Unavailable\r\n")
    assert answers["404"] == "not here"


def test_health_check_and_udp_cluster() -> None:
    config = parse_config(
        """
        [[listeners]]
        protocol = "udp"
        address = "127.0.0.1:53"
        [clusters.dns]
        protocol = "tcp"
        frontends = [{ address = "127.0.0.1:53" }]
        backends = [{ address = "10.0.0.1:53" }]
        [clusters.dns.health_check]
        uri = "/ready"
        [clusters.dns.udp]
        affinity_key = "SOURCE_IP_PORT"
        [clusters.dns.udp.health]
        udp_probe_payload = "ping"
        """
    )
    dns = config.clusters["dns"]
    assert len(dns.udp_frontends) == 1 and dns.tcp_frontends == []
    assert dns.cluster.health_check is not None and dns.cluster.health_check.interval == 10
    assert dns.cluster.udp is not None and dns.cluster.udp.health is not None
    assert dns.cluster.udp.health.udp_probe_payload == b"ping"
    assert replayed(config).health_checks["dns"].uri == "/ready"


def test_cluster_errors(config_dir: Path) -> None:
    text = """
        [[listeners]]
        protocol = "http"
        address = "127.0.0.1:80"
        [[listeners]]
        protocol = "tcp"
        address = "127.0.0.1:81"
        [[listeners]]
        protocol = "https"
        address = "127.0.0.1:443"
        [clusters.a]
        protocol = "ftp"
        frontends = []
        backends = []
        [clusters.b]
        protocol = "http"
        sticky = true
        frontends = [
            { address = "127.0.0.1:80" },
            {address="127.0.0.1:80",hostname="x.com",certificate="certificate.pem",key="key.pem"},
            { address = "127.0.0.1:80", hostname = "y.com", hsts = { enabled = true } },
            { address = "127.0.0.1:81", hostname = "z.com" },
            { address = "127.0.0.1:443", hostname = "w.com" },
            { address = "127.0.0.1:80", hostname = "v.com", sticky_session = true },
            { address = "127.0.0.1:80", hostname = "u u" },
        ]
        backends = [{ address = "127.0.0.1:0" }, { address = "127.0.0.1:1", weight = 256 }]
        [clusters.b.health_check]
        uri = "health"
        interval = 0
        [clusters.c]
        protocol = "tcp"
        frontends = [{ address = "127.0.0.1:80" }, { address = "127.0.0.1:82", hostname = "x" }]
        [clusters.""]
        protocol = "http"
        frontends = []
        backends = []
        """
    with pytest.raises(ConfigError) as caught:
        load_config(write(config_dir, text))
    found = [(p.table, p.key, p.message) for p in caught.value.problems]
    assert found == [
        ("clusters.a", "protocol", "unknown protocol 'ftp': expected http or tcp"),
        ("clusters.b.health_check", "uri", "'health' must start with /"),
        ("clusters.b.health_check", "interval", "0 is out of range 1..4294967295"),
        ("clusters.b.frontends.0", "hostname", "missing required key"),
        (
            "clusters.b.frontends.1",
            "certificate",
            "127.0.0.1:80 is a plain HTTP listener: no certificate there",
        ),
        ("clusters.b.frontends.2", "hsts", "HSTS is only valid on HTTPS (RFC 6797 7.2)"),
        (
            "clusters.b.frontends.3",
            "address",
            "127.0.0.1:81 is a tcp listener; an http cluster needs http(s)",
        ),
        (
            "clusters.b.frontends.4",
            "certificate",
            "HTTPS frontend needs a certificate: neither it nor listener 127.0.0.1:443 has one",
        ),
        ("clusters.b.frontends.5", "sticky_session", "unknown key"),
        (
            "clusters.b.frontends.6",
            None,
            "hostname 'u u' must not contain spaces, control characters or / ? # @ \\",
        ),
        ("clusters.b.backends.0", "address", "backend 127.0.0.1:0: port 0 is not a usable port"),
        ("clusters.b.backends.1", "weight", "256 is out of range 0..255"),
        ("clusters.b", "sticky", "unknown key"),
        ("clusters.c", "backends", "missing required key"),
        (
            "clusters.c.frontends.0",
            "address",
            "127.0.0.1:80 is an http(s) listener; a tcp cluster needs tcp or udp",
        ),
        ("clusters.c.frontends.1", "hostname", "not allowed on a tcp cluster's frontend"),
        ("clusters.", None, "cluster id must not be empty"),
    ]
    assert all(p.file == str(config_dir / "config.toml") for p in caught.value.problems)


def test_conflicts_between_valid_objects_are_located() -> None:
    assert problems(
        """
        [clusters.d]
        protocol = "http"
        backends = []
        frontends = [
            { address = "127.0.0.1:80", hostname = "dup.com" },
            { address = "127.0.0.1:80", hostname = "dup.com", path_type = "PREFIX" },
        ]
        [clusters.e]
        protocol = "tcp"
        frontends = [{ address = "127.0.0.1:81" }]
        backends = []
        [clusters.f]
        protocol = "tcp"
        frontends = [{ address = "127.0.0.1:81" }]
        backends = []
        """
    ) == [
        "[clusters.d.frontends.1] http frontend 127.0.0.1:80;dup.com;P already exists",
        "[clusters.f.frontends.0] tcp frontend 127.0.0.1:81 already exists (cluster e)",
    ]


def test_tcp_proxy_protocol_modes() -> None:
    base = """
        [[listeners]]
        protocol = "tcp"
        address = "127.0.0.1:81"
        expect_proxy = true
        [[listeners]]
        protocol = "tcp"
        address = "127.0.0.1:82"
        [clusters.t]
        protocol = "tcp"
        backends = []
    """
    relay = parse_config(base + 'send_proxy = true\nfrontends = [{ address = "127.0.0.1:81" }]')
    assert relay.clusters["t"].cluster.proxy_protocol == ProxyProtocolConfig.RELAY_HEADER
    expect = parse_config(base + 'frontends = [{ address = "127.0.0.1:81" }]')
    assert expect.clusters["t"].cluster.proxy_protocol == ProxyProtocolConfig.EXPECT_HEADER
    assert problems(
        base + 'frontends = [{ address = "127.0.0.1:81" }, { address = "127.0.0.1:82" }]'
    ) == [
        "[clusters.t] frontends: "
        "frontends mix listeners with and without expect_proxy (PROXY protocol)"
    ]


# ---------------------------------------------------------------------------------------------
# top level


def test_top_level_errors_and_warnings() -> None:
    assert problems(
        """
        worker_count = 0
        automatic_state_save = true
        log_target = "syslog"
        access_logs_format = "xml"
        command_allowed_uids = ["root"]
        [metrics]
        detail = "everything"
        [prometheus]
        address = "nowhere"
        """
    ) == [
        "worker_count: 0 is out of range 1..65535",
        "log_target: 'syslog': expected stdout, udp://, tcp://, unix:// or file://",
        "access_logs_format: unknown value 'xml': expected one of ASCII, JSON, PROTOBUF",
        "command_allowed_uids: expected an array of user ids",
        "[metrics] address: missing required key",
        "[metrics] detail: 'everything': expected process, frontend, cluster or backend",
        "[prometheus] address: invalid socket address 'nowhere': expected ip:port",
        "automatic_state_save: needs saved_state (the file to save to)",
    ]
    config = parse_config(
        "splice_pipe_capacity_bytes = 65536\nmin_buffers = 5\nmax_buffers = 2\n"
        '[hsts]\nenabled = true\n[prometheus]\naddress = "0.0.0.0:9100"',
        "config.toml",
    )
    assert config.prometheus_address == "0.0.0.0:9100"
    assert config.min_buffers == 2
    assert warnings(config) == [
        "splice_pipe_capacity_bytes: accepted but ignored: pysozu does not use splice(2)",
        "min_buffers: larger than max_buffers, lowered to 2",
        "hsts: accepted but ignored: a top-level [hsts] table applies to nothing: "
        "write [listeners.hsts]",
    ]


def test_unreadable_files_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.toml")
    assert caught.value.problems == [
        ConfigProblem(
            str(tmp_path / "missing.toml"), "", None, "cannot read: No such file or directory"
        )
    ]
    assert (
        str(caught.value) == f"{tmp_path / 'missing.toml'}: cannot read: No such file or directory"
    )
    with pytest.raises(ConfigError, match=r"config.toml: invalid TOML: .*\(at line 2, column 5\)"):
        parse_config("a = 1\nb = = 2\n", "config.toml")


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, 'command_socket = "run/sozu.sock"\nsaved_state = "state.json"')
    )
    assert config.command_socket == str(tmp_path / "run" / "sozu.sock")
    assert config.saved_state == str(tmp_path / "state.json")


def test_activate_listeners_false_adds_without_activating() -> None:
    config = parse_config("activate_listeners = false\n" + HTTP_CLUSTER)
    assert "activate_listener" not in [r.verb for r in config.generate_requests()]
    assert not any(listener.active for listener in replayed(config).http_listeners.values())


def test_problem_formatting() -> None:
    problem = ConfigProblem(
        "config.toml", "clusters.app.frontends.0", "hostname", "missing required key"
    )
    assert str(problem) == "config.toml: [clusters.app.frontends.0] hostname: missing required key"
    assert str(ConfigProblem("c.toml", "", "worker_count", "bad")) == "c.toml: worker_count: bad"
    assert str(ConfigProblem("c.toml", "listeners.0", None, "bad")) == "c.toml: [listeners.0] bad"


def test_http_only_cluster_keys_on_a_tcp_cluster_are_ignored_with_a_warning() -> None:
    config = parse_config(
        """
        [clusters.t]
        protocol = "tcp"
        sticky_session = true
        frontends = [{ address = "127.0.0.1:81", method = "GET" }]
        backends = []
        """,
        "config.toml",
    )
    assert config.clusters["t"].cluster.sticky_session is False
    assert warnings(config) == [
        "[clusters.t.frontends.0] method: does not apply to a tcp cluster's frontend, ignored",
        "[clusters.t] sticky_session: does not apply to a tcp cluster, ignored",
    ]


def test_udp_listeners_and_frontends_load_as_requests_without_a_warning() -> None:
    config = parse_config(
        """
        [[listeners]]
        protocol = "udp"
        address = "127.0.0.1:53"

        [clusters.t]
        protocol = "tcp"
        frontends = [{ address = "127.0.0.1:81" }, { address = "127.0.0.1:53" }]
        backends = []
        """,
        "config.toml",
    )
    assert warnings(config) == []
    verbs = [request.verb for request in config.generate_requests()]
    assert verbs.count("add_tcp_listener") == verbs.count("add_tcp_frontend") == 1
    assert verbs.count("add_udp_listener") == verbs.count("add_udp_frontend") == 1


UDP_HEALTH = """
        [[listeners]]
        protocol = "udp"
        address = "127.0.0.1:53"

        [clusters.t]
        protocol = "tcp"
        frontends = [{ address = "127.0.0.1:53" }]
        backends = []
        %s
        [clusters.t.udp]
        affinity_key = "SOURCE_IP_PORT"
        [clusters.t.udp.health]
        %s
        """


def test_udp_probes_load_without_a_warning() -> None:
    config = parse_config(UDP_HEALTH % ("", 'mode = "UDP_PROBE"\nudp_probe_payload = "ping"'), "c")
    assert warnings(config) == []
    udp = config.clusters["t"].cluster.udp
    health = udp.health if udp is not None else None
    assert health is not None and health.udp_probe_payload == b"ping"
    assert parse_config(UDP_HEALTH % ("", "tcp_port = 9053\nrise = 1"), "c").warnings == []


def test_udp_probe_without_payload_or_beside_a_health_check_is_warned() -> None:
    config = parse_config(UDP_HEALTH % ("", 'mode = "UDP_PROBE"'), "config.toml")
    assert len(warnings(config)) == 1
    assert "[clusters.t.udp.health]" in warnings(config)[0]
    assert "probed by TCP connect" in warnings(config)[0]
    both = '[clusters.t.health_check]\nuri = "/"'
    config = parse_config(UDP_HEALTH % (both, ""), "config.toml")
    assert ["only these UDP probes are run" in w for w in warnings(config)] == [True]


# Hostile configurations: any mix of known keys and odd values gives a Config or a ConfigError.
VALUES = ["0", "-1", "70000", "1e3", '"x"', '"127.0.0.1:80"', '"file://nope"', "true", "[]"]
VALUES += ['["h2"]', "{ a = 1 }", '{ "503" = "x" }', '"PRE"', '"/"', '"(["']
LISTENER_KEYS = ["address", "protocol", "certificate", "key", "hsts", "answers", "front_timeout"]
LISTENER_KEYS += ["alpn_protocols", "expect_proxy", "public_address", "tls_versions"]
LISTENER_KEYS += ["trusted_proxies", "request_body_timeout", "request_body_min_rate"]
FRONTEND_KEYS = ["address", "hostname", "path", "path_type", "position", "certificate", "tags"]
FRONTEND_KEYS += ["redirect", "rewrite_port", "hsts", "headers", "method"]
CLUSTER_KEYS = ["protocol", "load_balancing", "send_proxy", "answers", "health_check", "udp"]


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    def pairs(keys: list[str]) -> list[str]:
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
        return [f"{key} = {draw(st.sampled_from(VALUES))}" for key in chosen]

    lines = pairs(["worker_count", "buffer_size", "command_socket", "log_target", "metrics"])
    addresses = st.sampled_from(['"127.0.0.1:80"', '"127.0.0.1:81"', '"[::1]:80"'])
    for _ in range(draw(st.integers(0, 3))):
        protocol = draw(st.sampled_from(["http", "https", "tcp", "udp"]))
        lines += ["[[listeners]]", f'protocol = "{protocol}"', f"address = {draw(addresses)}"]
        lines += pairs(LISTENER_KEYS[2:])
    for index in range(draw(st.integers(0, 3))):
        fronts = ", ".join(
            "{ " + ", ".join([f"address = {draw(addresses)}", *pairs(FRONTEND_KEYS[1:])]) + " }"
            for _ in range(draw(st.integers(0, 2)))
        )
        protocol = draw(st.sampled_from(["http", "tcp"]))
        lines += [f"[clusters.c{index}]", f"frontends = [{fronts}]", "backends = []"]
        lines += [f'protocol = "{protocol}"', *pairs(CLUSTER_KEYS[1:])]
    return "\n".join(lines)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)
@given(toml_documents())
def test_hostile_configurations_never_crash(text: str) -> None:
    try:
        config = parse_config(text, "config.toml")
    except ConfigError as error:
        assert error.problems and all(p.file == "config.toml" and p.message for p in error.problems)
    else:
        config.routing_state()  # a configuration that loads is one the state accepts


def test_an_expired_certificate_is_loaded_with_a_warning(config_dir: Path) -> None:
    """As sozu does: its own sample configuration names an expired certificate."""
    leaf = trustme.CA().issue_cert(
        "old.example",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    (config_dir / "old.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (config_dir / "old-key.pem").write_bytes(leaf.private_key_pem.bytes())
    config = load_config(
        write(
            config_dir,
            """
            [[listeners]]
            protocol = "https"
            address = "127.0.0.1:8443"
            [clusters.a]
            protocol = "http"
            backends = []
            [[clusters.a.frontends]]
            address = "127.0.0.1:8443"
            hostname = "old.example"
            certificate = "old.pem"
            key = "old-key.pem"
            """,
        )
    )
    assert any(
        "certificate: certificate for old.example expired on 2021-01-01 00:00:00 UTC" in warning
        for warning in config.warnings
    ), config.warnings
    assert len(replayed(config).certificates[SocketAddress.parse("127.0.0.1:8443")]) == 1


def test_unknown_top_level_keys_are_errors_as_nested_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("worker_cout = 4\nsurprise = 1\n", "config.toml")
    assert [str(problem) for problem in caught.value.problems] == [
        "config.toml: worker_cout: unknown key (did you mean worker_count?)",
        "config.toml: surprise: unknown key",
    ]
