"""The HTTPS listener's rules without sockets: ALPN served, HSTS values, strict SNI binding,
certificate changes applied to the listener's store, bad certificates refused."""

from __future__ import annotations

import datetime
import logging

import pytest
import trustme

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddCertificate,
    AlpnProtocols,
    CertificateAndKey,
    HstsConfig,
    HttpsListenerConfig,
    RemoveCertificate,
    ReplaceCertificate,
    Request,
    UpdateHttpsListenerConfig,
)
from dataplane.command.state import ConfigState, StateError
from dataplane.command.state_rules import expiry_warning
from dataplane.proxy.clusters import HttpProxy
from dataplane.proxy.routing.route import hsts_value
from dataplane.proxy.tls.listener import HttpsListener, apply_tls, tls_gauges
from dataplane.proxy.tls.policy import SniBinding, served_alpn
from dataplane.proxy.tls.store import TlsError

ADDRESS = SocketAddress.parse("127.0.0.1:8443")
CA = trustme.CA()


def certificate(*names: str, **options: object) -> CertificateAndKey:
    leaf = CA.issue_cert(*names, **options)  # type: ignore[arg-type]
    return CertificateAndKey(
        certificate=leaf.cert_chain_pems[0].bytes().decode(),
        key=leaf.private_key_pem.bytes().decode(),
    )


def listener(**options: object) -> HttpsListener:
    proxy = HttpProxy(0, 0)
    apply_tls(proxy, "add_https_listener", HttpsListenerConfig(address=ADDRESS, **options))
    found = proxy.listeners[ADDRESS]
    assert isinstance(found, HttpsListener)
    return found


def test_alpn_offers_the_listeners_protocols_in_order() -> None:
    assert served_alpn(HttpsListenerConfig(address=ADDRESS)) == ["h2", "http/1.1"]
    h11_first = HttpsListenerConfig(address=ADDRESS, alpn_protocols=["http/1.1", "h2"])
    assert served_alpn(h11_first) == ["http/1.1", "h2"]
    assert served_alpn(HttpsListenerConfig(address=ADDRESS, alpn_protocols=["h2"])) == ["h2"]
    h2_only = HttpsListenerConfig(address=ADDRESS, disable_http11=True)
    assert served_alpn(h2_only) == ["h2"]
    nothing = HttpsListenerConfig(address=ADDRESS, alpn_protocols=["http/1.1"], disable_http11=True)
    with pytest.raises(TlsError, match="no ALPN protocol"):
        served_alpn(nothing)


def test_hsts_values() -> None:
    assert hsts_value(None) is None
    assert hsts_value(HstsConfig(enabled=False, max_age=5)) is None
    assert hsts_value(HstsConfig(enabled=True)) == "max-age=31536000"
    full = HstsConfig(enabled=True, max_age=10, include_subdomains=True, preload=True)
    assert hsts_value(full) == "max-age=10; includeSubDomains; preload"


def test_sni_binding() -> None:
    binding = SniBinding(("a.example", "*.b.example"), None)
    assert binding.allows("a.example") and binding.allows("A.EXAMPLE")
    assert binding.allows("x.b.example")
    assert not binding.allows("b.example") and not binding.allows("y.x.b.example")
    assert not binding.allows("*.b.example")  # a wildcard-looking host is not expanded
    assert not binding.allows("c.example")
    default = SniBinding(("pysozu default certificate",), "unknown.example")
    assert default.allows("unknown.example") and not default.allows("a.example")


def test_sni_binding_remembers_the_last_host_allowed_and_nothing_else() -> None:
    binding = SniBinding(("a.example", "*.b.example"), None)
    assert not binding.allows("") and not binding.allows("c.example")  # nothing cached yet
    for _ in range(3):  # a connection's requests: the same host, answered from the cache
        assert binding.allows("X.B.example")
    assert not binding.allows("c.example") and not binding.allows("*.b.example")
    assert not binding.allows("b.example") and not binding.allows("")
    assert binding.allows("a.example") and binding.allows("x.b.example")


def test_certificates_added_replaced_removed_by_requests() -> None:
    https = listener()
    proxy = https.proxy
    first = certificate("a.example")
    apply_tls(proxy, "add_certificate", AddCertificate(address=ADDRESS, certificate=first))
    served = https.certificates.lookup("a.example")
    assert served is not https.certificates.default
    second = certificate("a.example", "www.a.example")
    apply_tls(
        proxy,
        "replace_certificate",
        ReplaceCertificate(
            address=ADDRESS, new_certificate=second, old_fingerprint=served.fingerprint
        ),
    )
    replaced = https.certificates.lookup("a.example")
    assert replaced.fingerprint != served.fingerprint
    assert https.certificates.get(served.fingerprint) is None
    apply_tls(
        proxy,
        "remove_certificate",
        RemoveCertificate(address=ADDRESS, fingerprint=replaced.fingerprint),
    )
    assert https.certificates.lookup("a.example") is https.certificates.default


def test_an_expired_certificate_is_served_with_a_warning_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """sozu loads expired certificates; pysozu too, saying so in the log and in its gauges."""
    proxy = HttpProxy(0, 0)
    apply_tls(proxy, "add_https_listener", HttpsListenerConfig(address=ADDRESS))
    https = proxy.listeners[ADDRESS]
    assert isinstance(https, HttpsListener)
    assert tls_gauges(proxy) == {"tls.cert.min_expires_at_seconds": 0, "tls.cert.expired": 0}
    expired = certificate(
        "old.example",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    with caplog.at_level(logging.WARNING, "dataplane.worker"):
        https.add_certificate(expired, None)
    assert "expired on 2021-01-01 00:00:00 UTC: served anyway" in caplog.text
    assert https.certificates.lookup("old.example") is not https.certificates.default
    https.add_certificate(certificate("new.example"), None)
    gauges = tls_gauges(proxy)
    assert gauges["tls.cert.expired"] == 1
    assert gauges["tls.cert.min_expires_at_seconds"] == int(
        datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC).timestamp()
    )
    caplog.clear()
    later = int(datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC).timestamp())
    https.add_certificate(
        certificate("overridden.example", not_after=datetime.datetime(2021, 1, 1)), later
    )
    assert "overridden" not in caplog.text  # expired_at says when it ends


def test_certificate_requests_need_an_https_listener() -> None:
    proxy = HttpProxy(0, 0)
    request = AddCertificate(address=ADDRESS, certificate=certificate("a.example"))
    with pytest.raises(TlsError, match="no HTTPS listener"):
        apply_tls(proxy, "add_certificate", request)


def test_main_state_refuses_what_a_worker_would_not_serve() -> None:
    """Checked in main first, so a refused certificate never enters the saved state. An expired
    one is not refused (sozu loads it): main says so (`expiry_warning`), and keeps it."""
    state = ConfigState()
    state.dispatch(Request.of(add_https_listener=HttpsListenerConfig(address=ADDRESS)))
    expired = certificate(
        "old.example",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    state.dispatch(Request.of(add_certificate=AddCertificate(address=ADDRESS, certificate=expired)))
    warning = expiry_warning(expired, None)
    assert warning is not None and "old.example expired on 2021-01-01" in warning
    assert expiry_warning(expired, 4_000_000_000) is None
    assert expiry_warning(certificate("new.example"), None) is None
    state = ConfigState()
    state.dispatch(Request.of(add_https_listener=HttpsListenerConfig(address=ADDRESS)))
    intermediate = CA.create_child_ca()
    leaf = intermediate.issue_cert("chained.example")
    wrong_order = CertificateAndKey(
        certificate=leaf.cert_chain_pems[0].bytes().decode(),
        certificate_chain=[CA.cert_pem.bytes().decode(), leaf.cert_chain_pems[1].bytes().decode()],
        key=leaf.private_key_pem.bytes().decode(),
    )
    with pytest.raises(StateError, match="chain out of order"):
        state.dispatch(
            Request.of(add_certificate=AddCertificate(address=ADDRESS, certificate=wrong_order))
        )
    right_order = CertificateAndKey(
        certificate=leaf.cert_chain_pems[0].bytes().decode(),
        certificate_chain=[leaf.cert_chain_pems[1].bytes().decode(), CA.cert_pem.bytes().decode()],
        key=leaf.private_key_pem.bytes().decode(),
    )
    state.dispatch(
        Request.of(add_certificate=AddCertificate(address=ADDRESS, certificate=right_order))
    )
    assert len(state.certificates[ADDRESS]) == 1


def test_main_state_accepts_h2_alone_and_refuses_no_protocol() -> None:
    state = ConfigState()
    h2_only = HttpsListenerConfig(address=ADDRESS, alpn_protocols=["h2"])
    state.dispatch(Request.of(add_https_listener=h2_only))
    patch = UpdateHttpsListenerConfig(
        address=ADDRESS, alpn_protocols=AlpnProtocols(values=["http/1.1"]), disable_http11=True
    )
    with pytest.raises(StateError, match="no ALPN protocol"):
        state.dispatch(Request.of(update_https_listener=patch))
    assert state.https_listeners[ADDRESS].alpn_protocols == ["h2"]
