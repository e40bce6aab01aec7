"""ConfigState: every dispatch rule, the queries, generate_requests, hash and diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    AddBackend,
    AddCertificate,
    AlpnProtocols,
    CertificateAndKey,
    Cluster,
    DeactivateListener,
    FrontendFilters,
    HealthCheckConfig,
    HstsConfig,
    HttpListenerConfig,
    HttpsListenerConfig,
    ListenerType,
    PathRule,
    PathRuleKind,
    QueryCertificatesFilters,
    RemoveBackend,
    RemoveCertificate,
    RemoveListener,
    ReplaceCertificate,
    Request,
    RequestHttpFrontend,
    RequestTcpFrontend,
    RequestUdpFrontend,
    SetHealthCheck,
    TcpListenerConfig,
    TlsVersion,
    UdpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateHttpsListenerConfig,
    UpdateTcpListenerConfig,
)
from dataplane.command.state import (
    ConfigState,
    StateError,
    certificate_fingerprint,
    certificate_names,
)

FIXTURES = Path(__file__).parent / "fixtures" / "config"
CERT = (FIXTURES / "certificate.pem").read_text()
KEY = (FIXTURES / "key.pem").read_text()
CHAIN = (FIXTURES / "certificate_chain.pem").read_text()
OTHER_CERT = (FIXTURES / "other_certificate.pem").read_text()
OTHER_KEY = (FIXTURES / "other_key.pem").read_text()

HTTP = SocketAddress.parse("127.0.0.1:8080")
HTTPS = SocketAddress.parse("127.0.0.1:8443")
TCP = SocketAddress.parse("127.0.0.1:9000")
BACKEND = SocketAddress.parse("127.0.0.1:18081")


def apply(state: ConfigState, **verb: object) -> None:
    state.dispatch(Request.of(**verb))


def refused(state: ConfigState, match: str, **verb: object) -> None:
    """The request fails with a message matching `match` and the state does not change."""
    before = state.copy()
    with pytest.raises(StateError, match=match):
        state.dispatch(Request.of(**verb))
    assert state == before


def front(hostname: str = "example.com", cluster_id: str | None = "app", **kw: object):
    return RequestHttpFrontend(
        cluster_id=cluster_id, address=kw.pop("address", HTTP), hostname=hostname, **kw
    )


def cert(certificate: str = CERT, key: str = KEY, **kw: object) -> CertificateAndKey:
    return CertificateAndKey(certificate=certificate, key=key, **kw)


@pytest.fixture
def state() -> ConfigState:
    """An HTTP and an HTTPS listener, a TCP listener and a cluster `app`."""
    s = ConfigState()
    apply(s, add_http_listener=HttpListenerConfig(address=HTTP))
    apply(s, add_https_listener=HttpsListenerConfig(address=HTTPS))
    apply(s, add_tcp_listener=TcpListenerConfig(address=TCP))
    apply(s, add_cluster=Cluster(cluster_id="app"))
    return s


# ---------------------------------------------------------------------------------------------
# requests that are not state requests


def test_non_state_verb_is_refused(state: ConfigState) -> None:
    refused(state, "status is not a state request", status={})
    refused(state, "query_cluster_by_id is not a state request", query_cluster_by_id="app")


# ---------------------------------------------------------------------------------------------
# clusters and health checks


def test_add_cluster_is_an_upsert(state: ConfigState) -> None:
    apply(state, add_cluster=Cluster(cluster_id="app", sticky_session=True))
    assert state.clusters["app"].sticky_session is True
    assert list(state.clusters) == ["app"]


@pytest.mark.parametrize(
    ("cluster_id", "match"),
    [
        ("", "cluster_id must not be empty"),
        ("a b", "spaces"),
        ("a\nb", "control"),
        ("x" * 300, "longer"),
    ],
)
def test_add_cluster_refuses_bad_ids(state: ConfigState, cluster_id: str, match: str) -> None:
    refused(state, match, add_cluster=Cluster(cluster_id=cluster_id))


def test_remove_cluster(state: ConfigState) -> None:
    refused(state, "cluster nope not found", remove_cluster="nope")
    apply(state, remove_cluster="app")
    assert state.clusters == {}


def test_remove_cluster_keeps_its_routes_as_sozu_does(state: ConfigState) -> None:
    apply(state, add_http_frontend=front())
    apply(state, add_backend=AddBackend(cluster_id="app", backend_id="b", address=BACKEND))
    apply(state, remove_cluster="app")
    assert "app" not in state.clusters
    assert len(state.http_fronts) == 1
    assert [b.backend_id for b in state.backends["app"]] == ["b"]
    # and the state still replays: routes may name a cluster that is not there
    replayed = ConfigState()
    for request in state.generate_requests():
        replayed.dispatch(request)
    assert replayed == state


def test_routes_may_come_before_their_cluster(state: ConfigState) -> None:
    apply(state, add_http_frontend=front(cluster_id="later"))
    apply(state, add_backend=AddBackend(cluster_id="later", backend_id="b", address=BACKEND))
    apply(state, add_cluster=Cluster(cluster_id="later"))
    assert "later" in state.clusters


def test_health_checks(state: ConfigState) -> None:
    check = HealthCheckConfig(uri="/health")
    refused(
        state,
        "cluster nope not found",
        set_health_check=SetHealthCheck(cluster_id="nope", config=check),
    )
    refused(state, "has no health check", remove_health_check="app")
    apply(state, set_health_check=SetHealthCheck(cluster_id="app", config=check))
    assert state.health_checks == {"app": check}
    assert state.clusters["app"].health_check == check
    apply(state, remove_health_check="app")
    assert state.health_checks == {}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (HealthCheckConfig(uri="health"), "must start with /"),
        (HealthCheckConfig(uri="/a\r\nX: y"), "control"),
        (HealthCheckConfig(uri="/", interval=0), "interval must be at least 1"),
        (HealthCheckConfig(uri="/", unhealthy_threshold=0), "unhealthy_threshold"),
    ],
)
def test_invalid_health_checks_are_refused(
    state: ConfigState, config: HealthCheckConfig, match: str
) -> None:
    refused(state, match, set_health_check=SetHealthCheck(cluster_id="app", config=config))
    refused(state, match, add_cluster=Cluster(cluster_id="other", health_check=config))


# ---------------------------------------------------------------------------------------------
# listeners


def test_duplicate_listener_is_refused(state: ConfigState) -> None:
    refused(
        state,
        "already used by the http listener",
        add_http_listener=HttpListenerConfig(address=HTTP),
    )
    refused(
        state, "already used by the http listener", add_tcp_listener=TcpListenerConfig(address=HTTP)
    )
    refused(
        state,
        "already used by the tcp listener",
        add_https_listener=HttpsListenerConfig(address=TCP),
    )


def test_udp_listener_may_share_a_tcp_port(state: ConfigState) -> None:
    apply(state, add_udp_listener=UdpListenerConfig(address=TCP))
    refused(
        state, "already used by the udp listener", add_udp_listener=UdpListenerConfig(address=TCP)
    )
    assert TCP in state.udp_listeners and TCP in state.tcp_listeners


def test_listener_values_are_checked() -> None:
    state = ConfigState()
    zero = SocketAddress.parse("127.0.0.1:0")
    refused(state, "port 0", add_http_listener=HttpListenerConfig(address=zero))
    refused(
        state,
        "front_timeout must not be negative",
        add_tcp_listener=TcpListenerConfig(address=TCP, front_timeout=-1),
    )
    refused(
        state, "sticky_name", add_http_listener=HttpListenerConfig(address=HTTP, sticky_name="a b")
    )
    refused(
        state,
        "h2_max_concurrent_streams must be at least 1",
        add_http_listener=HttpListenerConfig(address=HTTP, h2_max_concurrent_streams=0),
    )
    refused(
        state,
        "ALPN protocol 'h3'",
        add_https_listener=HttpsListenerConfig(address=HTTPS, alpn_protocols=["h3"]),
    )
    refused(
        state,
        "both certificate and key",
        add_https_listener=HttpsListenerConfig(address=HTTPS, certificate=CERT),
    )
    refused(
        state,
        "key does not match",
        add_https_listener=HttpsListenerConfig(address=HTTPS, certificate=CERT, key=OTHER_KEY),
    )
    apply(state, add_https_listener=HttpsListenerConfig(address=HTTPS, certificate=CERT, key=KEY))


def test_activate_and_deactivate(state: ConfigState) -> None:
    apply(state, activate_listener=ActivateListener(address=HTTP, proxy=ListenerType.HTTP))
    assert state.http_listeners[HTTP].active is True
    apply(state, deactivate_listener=DeactivateListener(address=HTTP, proxy=ListenerType.HTTP))
    assert state.http_listeners[HTTP].active is False
    refused(
        state,
        "https listener 127.0.0.1:8080 not found",
        activate_listener=ActivateListener(address=HTTP, proxy=ListenerType.HTTPS),
    )
    refused(
        state,
        "udp listener",
        deactivate_listener=DeactivateListener(address=TCP, proxy=ListenerType.UDP),
    )


def test_remove_listener(state: ConfigState) -> None:
    refused(
        state,
        "tcp listener 127.0.0.1:8080 not found",
        remove_listener=RemoveListener(address=HTTP, proxy=ListenerType.TCP),
    )
    apply(state, add_http_frontend=front())
    refused(
        state,
        "still has 1 frontend",
        remove_listener=RemoveListener(address=HTTP, proxy=ListenerType.HTTP),
    )
    apply(state, add_certificate=AddCertificate(address=HTTPS, certificate=cert()))
    refused(
        state,
        "still has 1 certificate",
        remove_listener=RemoveListener(address=HTTPS, proxy=ListenerType.HTTPS),
    )
    apply(state, remove_listener=RemoveListener(address=TCP, proxy=ListenerType.TCP))
    assert TCP not in state.tcp_listeners


def test_update_patches_only_the_fields_that_are_set(state: ConfigState) -> None:
    apply(
        state,
        update_http_listener=UpdateHttpListenerConfig(
            address=HTTP, front_timeout=5, answers={"404": "gone"}
        ),
    )
    listener = state.http_listeners[HTTP]
    assert (listener.front_timeout, listener.back_timeout, listener.answers) == (
        5,
        30,
        {"404": "gone"},
    )
    apply(
        state, update_http_listener=UpdateHttpListenerConfig(address=HTTP, answers={"503": "busy"})
    )
    assert state.http_listeners[HTTP].answers == {"404": "gone", "503": "busy"}
    assert state.http_listeners[HTTP].front_timeout == 5
    apply(state, update_tcp_listener=UpdateTcpListenerConfig(address=TCP, expect_proxy=True))
    assert state.tcp_listeners[TCP].expect_proxy is True


def test_trusted_proxies_are_checked_patched_and_cleared(state: ConfigState) -> None:
    other = SocketAddress.parse("127.0.0.1:8081")
    refused(
        state,
        r"http listener 127\.0\.0\.1:8081: trusted_proxies: 'edge' is not an IP network",
        add_http_listener=HttpListenerConfig(address=other, trusted_proxies=["10.0.0.0/8", "edge"]),
    )
    refused(
        state,
        r"https listener 127\.0\.0\.1:8443: trusted_proxies: '10\.0\.0\.1/8' has bits set",
        update_https_listener=UpdateHttpsListenerConfig(
            address=HTTPS, trusted_proxies=["10.0.0.1/8"]
        ),
    )
    patch = UpdateHttpListenerConfig(address=HTTP, trusted_proxies=["10.0.0.0/8", "::1"])
    apply(state, update_http_listener=patch)
    assert state.http_listeners[HTTP].trusted_proxies == ["10.0.0.0/8", "::1"]
    apply(state, update_http_listener=UpdateHttpListenerConfig(address=HTTP, front_timeout=4))
    assert state.http_listeners[HTTP].trusted_proxies == ["10.0.0.0/8", "::1"]  # None keeps
    apply(state, update_http_listener=UpdateHttpListenerConfig(address=HTTP, trusted_proxies=[]))
    assert state.http_listeners[HTTP].trusted_proxies == []


def test_request_body_rate_is_patched_and_refused_negative(state: ConfigState) -> None:
    assert state.http_listeners[HTTP].request_body_min_rate == 500
    patch = UpdateHttpListenerConfig(address=HTTP, request_body_timeout=3)
    apply(state, update_http_listener=patch)
    listener = state.http_listeners[HTTP]
    assert (listener.request_body_timeout, listener.request_body_min_rate) == (3, 500)
    refused(
        state,
        r"request_body_min_rate must not be negative",
        update_http_listener=UpdateHttpListenerConfig(address=HTTP, request_body_min_rate=-1),
    )


def test_update_https_listener(state: ConfigState) -> None:
    apply(
        state,
        update_https_listener=UpdateHttpsListenerConfig(
            address=HTTPS,
            alpn_protocols=AlpnProtocols(values=["http/1.1"]),  # h2 alone: refused until h2
            hsts=HstsConfig(enabled=True),
        ),
    )
    assert state.https_listeners[HTTPS].alpn_protocols == ["http/1.1"]
    assert state.https_listeners[HTTPS].hsts == HstsConfig(enabled=True)
    apply(
        state,
        update_https_listener=UpdateHttpsListenerConfig(
            address=HTTPS, alpn_protocols=AlpnProtocols(values=[])
        ),
    )
    assert state.https_listeners[HTTPS].alpn_protocols == []  # empty: back to the default
    refused(
        state,
        "ALPN protocol 'spdy'",
        update_https_listener=UpdateHttpsListenerConfig(
            address=HTTPS, alpn_protocols=AlpnProtocols(values=["spdy"])
        ),
    )


def test_update_refusals(state: ConfigState) -> None:
    refused(
        state,
        "http listener 127.0.0.1:8443 not found",
        update_http_listener=UpdateHttpListenerConfig(address=HTTPS),
    )
    refused(
        state,
        "h2_max_ping_per_window must be at least 1",
        update_http_listener=UpdateHttpListenerConfig(address=HTTP, h2_max_ping_per_window=0),
    )
    refused(
        state,
        "sozu_id_header",
        update_http_listener=UpdateHttpListenerConfig(address=HTTP, sozu_id_header="a:b"),
    )
    apply(
        state,
        update_http_listener=UpdateHttpListenerConfig(
            address=HTTP, h2_graceful_shutdown_deadline_seconds=0
        ),
    )


# ---------------------------------------------------------------------------------------------
# frontends


def test_http_frontends(state: ConfigState) -> None:
    apply(state, add_http_frontend=front())
    refused(
        state,
        "http frontend 127.0.0.1:8080;example.com;P already exists",
        add_http_frontend=front(cluster_id=None),
    )
    apply(state, add_http_frontend=front(path=PathRule(value="/api")))
    apply(state, add_http_frontend=front(method="GET"))
    assert len(state.http_fronts) == 3
    apply(state, remove_http_frontend=front(method="GET"))
    refused(state, "not found", remove_http_frontend=front(method="GET"))
    assert len(state.http_fronts) == 2


def test_frontend_needs_its_listener(state: ConfigState) -> None:
    refused(state, "cluster_id must not be empty", add_http_frontend=front(cluster_id=""))
    refused(state, "no https listener at 127.0.0.1:8080", add_https_frontend=front())
    refused(state, "no http listener at 127.0.0.1:8443", add_http_frontend=front(address=HTTPS))
    apply(state, add_https_frontend=front(address=HTTPS))
    apply(state, add_http_frontend=front(cluster_id=None, hostname="deny.example.com"))


@pytest.mark.parametrize(
    ("frontend", "match"),
    [
        (front(hostname=""), "hostname must not be empty"),
        (front(hostname="a b.com"), "must not contain spaces"),
        (front(hostname="a.com/x"), "must not contain"),
        (front(path=PathRule(kind=PathRuleKind.REGEX, value="(")), "does not compile"),
        (front(path=PathRule(value="api")), "must start with /"),
        (
            front(path=PathRule(kind=PathRuleKind.EQUALS, value="/a b")),
            "must start with / and contain no spaces",
        ),
        (front(method="GE T"), "method"),
        (front(rewrite_port=70000), "rewrite_port"),
        (front(cluster_id=""), "cluster_id must not be empty"),
        (front(hsts=HstsConfig(enabled=True)), "HSTS is only valid over HTTPS"),
        (front(address=SocketAddress.parse("127.0.0.1:0")), "port 0"),
    ],
)
def test_frontend_values_are_checked(
    state: ConfigState, frontend: RequestHttpFrontend, match: str
) -> None:
    refused(state, match, add_http_frontend=frontend)


def test_tcp_and_udp_frontends(state: ConfigState) -> None:
    apply(state, add_cluster=Cluster(cluster_id="db"))
    apply(state, add_tcp_frontend=RequestTcpFrontend(cluster_id="app", address=TCP))
    refused(
        state,
        r"tcp frontend 127.0.0.1:9000 already exists \(cluster app\)",
        add_tcp_frontend=RequestTcpFrontend(cluster_id="db", address=TCP),
    )
    refused(
        state,
        "no tcp listener",
        add_tcp_frontend=RequestTcpFrontend(cluster_id="app", address=HTTP),
    )
    refused(
        state,
        "of cluster db not found",
        remove_tcp_frontend=RequestTcpFrontend(cluster_id="db", address=TCP),
    )
    apply(state, remove_tcp_frontend=RequestTcpFrontend(cluster_id="app", address=TCP))
    apply(state, add_udp_listener=UdpListenerConfig(address=TCP))
    apply(state, add_udp_frontend=RequestUdpFrontend(cluster_id="db", address=TCP))
    refused(
        state, "udp frontend", add_udp_frontend=RequestUdpFrontend(cluster_id="db", address=TCP)
    )
    apply(state, remove_udp_frontend=RequestUdpFrontend(cluster_id="db", address=TCP))
    assert state.udp_fronts == {} and state.tcp_fronts == {}


# ---------------------------------------------------------------------------------------------
# backends


def test_backends_are_upserted_by_id_and_address(state: ConfigState) -> None:
    backend = AddBackend(cluster_id="app", backend_id="b", address=BACKEND)
    apply(state, add_backend=backend)
    apply(
        state,
        add_backend=AddBackend(cluster_id="app", backend_id="b", address=BACKEND, sticky_id="s"),
    )
    assert [b.sticky_id for b in state.backends["app"]] == ["s"]
    apply(state, add_backend=AddBackend(cluster_id="app", backend_id="a", address=BACKEND))
    assert [b.backend_id for b in state.backends["app"]] == ["a", "b"]
    apply(state, remove_backend=RemoveBackend(cluster_id="app", backend_id="b", address=BACKEND))
    refused(
        state,
        "backend b at 127.0.0.1:18081 of cluster app not found",
        remove_backend=RemoveBackend(cluster_id="app", backend_id="b", address=BACKEND),
    )
    apply(state, remove_backend=RemoveBackend(cluster_id="app", backend_id="a", address=BACKEND))
    assert state.backends == {}


def test_backend_values_are_checked(state: ConfigState) -> None:
    refused(
        state,
        "cluster_id must not be empty",
        add_backend=AddBackend(cluster_id="", backend_id="b", address=BACKEND),
    )
    refused(
        state,
        "backend_id must not be empty",
        add_backend=AddBackend(cluster_id="app", backend_id="", address=BACKEND),
    )
    refused(
        state,
        "port 0",
        add_backend=AddBackend(
            cluster_id="app", backend_id="b", address=SocketAddress.parse("10.0.0.1:0")
        ),
    )


# ---------------------------------------------------------------------------------------------
# certificates


def test_certificate_facts() -> None:
    assert certificate_names(CERT) == ["lolcatho.st", "www.lolcatho.st"]
    assert certificate_names(OTHER_CERT) == ["other.example"]  # no SAN: the CN
    fingerprint = certificate_fingerprint(CERT)
    assert len(fingerprint) == 64 and fingerprint == fingerprint.lower()


def test_add_and_remove_certificate(state: ConfigState) -> None:
    apply(
        state,
        add_certificate=AddCertificate(address=HTTPS, certificate=cert(certificate_chain=[CHAIN])),
    )
    fingerprint = certificate_fingerprint(CERT)
    stored = state.certificates[HTTPS][fingerprint]
    assert stored.names == ["lolcatho.st", "www.lolcatho.st"]  # filled from the certificate
    refused(
        state,
        f"certificate {fingerprint} already exists",
        add_certificate=AddCertificate(address=HTTPS, certificate=cert()),
    )
    refused(
        state,
        "certificate 00+ not found",
        remove_certificate=RemoveCertificate(address=HTTPS, fingerprint="0" * 64),
    )
    refused(
        state,
        "not a hex SHA-256",
        remove_certificate=RemoveCertificate(address=HTTPS, fingerprint="xyz"),
    )
    apply(
        state, remove_certificate=RemoveCertificate(address=HTTPS, fingerprint=fingerprint.upper())
    )
    assert state.certificates == {}


def test_explicit_names_are_kept(state: ConfigState) -> None:
    apply(
        state,
        add_certificate=AddCertificate(address=HTTPS, certificate=cert(names=["only.lolcatho.st"])),
    )
    assert state.certificates[HTTPS][certificate_fingerprint(CERT)].names == ["only.lolcatho.st"]


@pytest.mark.parametrize(
    ("certificate", "match"),
    [
        (cert(certificate="not a pem"), "certificate is not a parsable PEM"),
        (cert(key="garbage"), "key is not a parsable"),
        (cert(key=OTHER_KEY), "key does not match the certificate"),
        (cert(certificate_chain=["junk"]), r"certificate_chain\[0\]"),
        (cert(names=["bad name"]), "spaces"),
    ],
)
def test_invalid_certificates_are_refused(
    state: ConfigState, certificate: CertificateAndKey, match: str
) -> None:
    refused(state, match, add_certificate=AddCertificate(address=HTTPS, certificate=certificate))


def test_certificate_needs_an_https_listener(state: ConfigState) -> None:
    refused(
        state,
        "https listener 127.0.0.1:8080 not found",
        add_certificate=AddCertificate(address=HTTP, certificate=cert()),
    )


def test_replace_certificate(state: ConfigState) -> None:
    apply(state, add_certificate=AddCertificate(address=HTTPS, certificate=cert()))
    old, new = certificate_fingerprint(CERT), certificate_fingerprint(OTHER_CERT)
    refused(
        state,
        "key does not match",
        replace_certificate=ReplaceCertificate(
            address=HTTPS, old_fingerprint=old, new_certificate=cert(OTHER_CERT, KEY)
        ),
    )
    refused(
        state,
        f"certificate {new} not found",
        replace_certificate=ReplaceCertificate(
            address=HTTPS, old_fingerprint=new, new_certificate=cert(OTHER_CERT, OTHER_KEY)
        ),
    )
    apply(
        state,
        replace_certificate=ReplaceCertificate(
            address=HTTPS, old_fingerprint=old, new_certificate=cert(OTHER_CERT, OTHER_KEY)
        ),
    )
    assert list(state.certificates[HTTPS]) == [new]
    # replacing a certificate by itself (e.g. new metadata) keeps it
    apply(
        state,
        replace_certificate=ReplaceCertificate(
            address=HTTPS,
            old_fingerprint=new,
            new_certificate=cert(OTHER_CERT, OTHER_KEY, versions=[TlsVersion.TLS_V1_3]),
        ),
    )
    assert state.certificates[HTTPS][new].versions == [TlsVersion.TLS_V1_3]


def test_state_is_not_shared_with_the_caller(state: ConfigState) -> None:
    frontend = front(tags={"a": "1"})
    apply(state, add_http_frontend=frontend)
    frontend.tags["a"] = "2"
    assert next(iter(state.http_fronts.values())).tags == {"a": "1"}


# ---------------------------------------------------------------------------------------------
# whole-state operations


def populated() -> ConfigState:
    s = ConfigState()
    apply(s, add_https_listener=HttpsListenerConfig(address=HTTPS))
    apply(s, add_http_listener=HttpListenerConfig(address=HTTP))
    apply(s, activate_listener=ActivateListener(address=HTTP, proxy=ListenerType.HTTP))
    apply(s, add_cluster=Cluster(cluster_id="app", health_check=HealthCheckConfig(uri="/h")))
    apply(s, add_http_frontend=front())
    apply(s, add_certificate=AddCertificate(address=HTTPS, certificate=cert()))
    apply(s, add_https_frontend=front(address=HTTPS))
    apply(s, add_backend=AddBackend(cluster_id="app", backend_id="b", address=BACKEND))
    return s


def test_generate_requests_follows_the_state_file_order() -> None:
    verbs = [request.verb for request in populated().generate_requests()]
    assert verbs == [
        "add_http_listener",
        "activate_listener",
        "add_https_listener",
        "add_cluster",
        "add_http_frontend",
        "add_certificate",
        "add_https_frontend",
        "add_backend",
        "set_health_check",
    ]
    add_listener = populated().generate_requests()[0].body
    assert add_listener.active is False  # activation is its own request


def test_generate_requests_rebuilds_an_equal_state() -> None:
    original = populated()
    rebuilt = ConfigState()
    for request in original.generate_requests():
        rebuilt.dispatch(request)
    assert rebuilt == original
    assert rebuilt.hash() == original.hash()


def test_hash_depends_on_content_only() -> None:
    a, b = populated(), populated()
    assert a.hash() == b.hash() and a.cluster_hashes() == b.cluster_hashes()
    apply(b, add_backend=AddBackend(cluster_id="app", backend_id="c", address=BACKEND))
    assert a.hash() != b.hash()
    assert a.cluster_hashes()["app"] != b.cluster_hashes()["app"]
    assert 0 <= a.hash() < 2**64
    assert ConfigState().hash() == ConfigState().hash()


def test_copy_is_independent() -> None:
    original = populated()
    twin = original.copy()
    apply(twin, add_backend=AddBackend(cluster_id="app", backend_id="z", address=BACKEND))
    apply(
        twin,
        remove_certificate=RemoveCertificate(
            address=HTTPS, fingerprint=certificate_fingerprint(CERT)
        ),
    )
    assert twin != original
    assert len(original.backends["app"]) == 1 and original.certificates[HTTPS]


def replayed(state: ConfigState, requests: list[Request]) -> ConfigState:
    result = state.copy()
    for request in requests:
        result.dispatch(request)
    return result


def test_diff_patches_a_listener_in_place() -> None:
    a = populated()
    b = a.copy()
    apply(b, update_http_listener=UpdateHttpListenerConfig(address=HTTP, front_timeout=5))
    requests = a.diff(b)
    assert [r.verb for r in requests] == ["update_http_listener"]
    assert replayed(a, requests) == b


def test_diff_patches_trusted_proxies_in_place_both_ways() -> None:
    a = populated()
    b = a.copy()
    patch = UpdateHttpListenerConfig(address=HTTP, trusted_proxies=["10.0.0.0/8"])
    apply(b, update_http_listener=patch)
    for old, new in ((a, b), (b, a)):  # set, then emptied again: a reload patches both
        requests = old.diff(new)
        assert [r.verb for r in requests] == ["update_http_listener"]
        assert replayed(old, requests) == new


def test_diff_replaces_a_listener_with_what_it_carries() -> None:
    a = populated()
    b = ConfigState()
    for request in a.generate_requests():
        if request.verb == "add_https_listener":
            request = Request.of(
                add_https_listener=HttpsListenerConfig(
                    address=HTTPS, versions=[TlsVersion.TLS_V1_3]
                )
            )
        b.dispatch(request)
    requests = a.diff(b)
    verbs = [r.verb for r in requests]
    assert (
        verbs.index("remove_https_frontend")
        < verbs.index("remove_certificate")
        < verbs.index("remove_listener")
    )
    assert (
        verbs.index("add_https_listener")
        < verbs.index("add_certificate")
        < verbs.index("add_https_frontend")
    )
    assert replayed(a, requests) == b


def test_diff_adds_a_new_certificate_before_removing_the_old() -> None:
    a = populated()
    b = a.copy()
    apply(
        b,
        replace_certificate=ReplaceCertificate(
            address=HTTPS,
            old_fingerprint=certificate_fingerprint(CERT),
            new_certificate=cert(OTHER_CERT, OTHER_KEY),
        ),
    )
    assert [r.verb for r in a.diff(b)] == ["add_certificate", "remove_certificate"]
    assert replayed(a, a.diff(b)) == b


def test_diff_between_empty_and_full() -> None:
    full = populated()
    assert replayed(ConfigState(), ConfigState().diff(full)) == full
    assert replayed(full, full.diff(ConfigState())) == ConfigState()
    assert full.diff(full.copy()) == []


# ---------------------------------------------------------------------------------------------
# queries


def test_queries() -> None:
    s = populated()
    listed = s.list_frontends(FrontendFilters())
    assert len(listed.http_frontends) == len(listed.https_frontends) == 1
    only_https = s.list_frontends(FrontendFilters(https=True))
    assert only_https.http_frontends == [] and len(only_https.https_frontends) == 1
    assert s.list_frontends(FrontendFilters(domain="nomatch")).http_frontends == []
    listeners = s.list_listeners()
    assert set(listeners.http_listeners) == {"127.0.0.1:8080"}
    info = s.cluster_information("app")
    assert info is not None and info.configuration == s.clusters["app"]
    assert len(info.backends) == 1 and len(info.https_frontends) == 1
    assert s.cluster_information("nope") is None
    assert [
        i.configuration.cluster_id
        for i in s.clusters_by_domain("example.com", None)
        if i.configuration
    ] == ["app"]
    assert s.clusters_by_domain("example.com", "/other") == []
    fingerprint = certificate_fingerprint(CERT)
    assert list(s.query_certificates(QueryCertificatesFilters()).certs) == [fingerprint]
    assert list(s.query_certificates(QueryCertificatesFilters(domain="lolcatho.st")).certs) == [
        fingerprint
    ]
    assert s.query_certificates(QueryCertificatesFilters(domain="other")).certs == {}
    assert list(
        s.query_certificates(QueryCertificatesFilters(fingerprint=fingerprint.upper())).certs
    ) == [fingerprint]
    by_address = s.certificates_by_address(QueryCertificatesFilters()).certificates
    assert by_address[0].address == HTTPS
    assert by_address[0].certificate_summaries[0].fingerprint == fingerprint
    assert by_address[0].certificate_summaries[0].domain == "lolcatho.st, www.lolcatho.st"


def test_diff_replaces_a_listener_when_no_patch_can_say_the_change() -> None:
    a = populated()
    apply(a, update_http_listener=UpdateHttpListenerConfig(address=HTTP, answers={"404": "x"}))
    b = populated()  # same, without the answer: a patch cannot remove a map entry
    requests = a.diff(b)
    verbs = [r.verb for r in requests]
    assert "update_http_listener" not in verbs
    assert verbs.index("remove_http_frontend") < verbs.index("remove_listener")
    assert verbs.index("add_http_listener") < verbs.index("activate_listener")
    assert replayed(a, requests) == b
