"""Certificate store: validation, SNI choice, hot changes, and real in-memory handshakes.

Certificates are generated per test run with trustme; no private key lives in the repository.
Handshakes run over `ssl.MemoryBIO` pairs: real TLS, no sockets.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dataplane.command.address import SocketAddress
from dataplane.command.messages import CertificateAndKey, HttpsListenerConfig, TlsVersion
from dataplane.proxy.tls import store as tls_module
from dataplane.proxy.tls.store import CertificateStore, TlsError, build_context, leaf_fingerprint

LISTENER = HttpsListenerConfig(address=SocketAddress.parse("127.0.0.1:8443"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def bundle(leaf: trustme.LeafCert, **overrides: object) -> CertificateAndKey:
    pems = [blob.bytes().decode() for blob in leaf.cert_chain_pems]
    fields: dict[str, object] = {
        "certificate": pems[0],
        "certificate_chain": pems[1:],
        "key": leaf.private_key_pem.bytes().decode(),
    }
    fields.update(overrides)
    return CertificateAndKey(**fields)  # type: ignore[arg-type]


def issue(ca: trustme.CA, *names: str, days: int = 90) -> CertificateAndKey:
    not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
    return bundle(ca.issue_cert(*names, not_after=not_after))


def served_names(
    store: CertificateStore, ca: trustme.CA, server_name: str | None, alpn: list[str] | None = None
) -> tuple[set[str], str | None]:
    """Handshake in memory; return the DNS names of the certificate served and the ALPN."""
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE  # the default certificate is self-signed
    if alpn:
        client_context.set_alpn_protocols(alpn)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=server_name)
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = store.default_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(20):
        done = 0
        for side in (client, server):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if done == 2:
            break
    der = client.getpeercert(binary_form=True)
    assert der is not None
    certificate = x509.load_der_x509_certificate(der)
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = set(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = set()
    return names, client.selected_alpn_protocol()


class TestValidation:
    def test_fingerprint_is_sha256_of_leaf_der(self, ca: trustme.CA) -> None:
        cert = issue(ca, "a.example")
        der = x509.load_pem_x509_certificate(cert.certificate.encode()).public_bytes(
            serialization.Encoding.DER
        )
        store = CertificateStore(LISTENER)
        fingerprint = store.add(cert)
        assert fingerprint == hashlib.sha256(der).hexdigest() == leaf_fingerprint(cert.certificate)
        assert store.add(cert) == fingerprint and len(store) == 1

    def test_key_must_match(self, ca: trustme.CA) -> None:
        one, other = issue(ca, "a.example"), issue(ca, "b.example")
        with pytest.raises(TlsError, match="does not match"):
            CertificateStore(LISTENER).add(bundle_with_key(one, other.key))

    @pytest.mark.parametrize(
        ("field", "value", "reason"),
        [
            ("certificate", "not a pem", "certificate"),
            (
                "certificate_chain",
                ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"],
                "certificate_chain",
            ),
            ("key", "nope", "private key"),
            ("names", [""], "usable name"),
        ],
    )
    def test_malformed_input_is_rejected_with_a_reason(
        self, ca: trustme.CA, field: str, value: object, reason: str
    ) -> None:
        cert = issue(ca, "a.example")
        broken = CertificateAndKey(
            **{**{f: getattr(cert, f) for f in cert.__struct_fields__}, field: value}
        )
        with pytest.raises(TlsError, match=reason):
            CertificateStore(LISTENER).add(broken)

    def test_encrypted_keys_are_refused(self, ca: trustme.CA) -> None:
        leaf = ca.issue_cert("a.example")
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ).decode()
        with pytest.raises(TlsError, match="encrypted"):
            CertificateStore(LISTENER).add(bundle(leaf, key=encrypted))

    def test_chain_order_is_checked_and_duplicate_leaf_dropped(self) -> None:
        root = trustme.CA()
        intermediate = root.create_child_ca()
        leaf = intermediate.issue_cert("deep.example")
        leaf_pem, intermediate_pem = (b.bytes().decode() for b in leaf.cert_chain_pems)
        root_pem = root.cert_pem.bytes().decode()
        store = CertificateStore(LISTENER)
        store.add(bundle(leaf, certificate_chain=[leaf_pem + intermediate_pem, root_pem]))
        stored = next(iter(store))
        assert len(stored.certificate.chain) == 2  # the leaf copy is gone
        with pytest.raises(TlsError, match="out of order"):
            store.add(bundle(leaf, certificate_chain=[root_pem, intermediate_pem]))
        fullchain = bundle(leaf, certificate=leaf_pem + intermediate_pem, certificate_chain=[])
        assert store.add(fullchain) == stored.fingerprint


def bundle_with_key(cert: CertificateAndKey, key: str) -> CertificateAndKey:
    return CertificateAndKey(certificate=cert.certificate, certificate_chain=[], key=key)


class TestResolution:
    def test_exact_then_wildcard_then_default(self, ca: trustme.CA) -> None:
        store = CertificateStore(LISTENER)
        exact = store.add(issue(ca, "www.example.com"))
        wild = store.add(issue(ca, "*.example.com"))
        assert store.lookup("WWW.example.com.").fingerprint == exact
        assert store.lookup("api.example.com").fingerprint == wild
        assert store.lookup("a.b.example.com") is store.default
        assert store.lookup(None) is store.default
        assert store.default_cert_used == 2
        stored = store.get(exact)
        assert stored is not None and store.resolve("www.example.com") is stored.context

    def test_longest_lived_wins_and_removal_falls_back(self, ca: trustme.CA) -> None:
        store = CertificateStore(LISTENER)
        short = store.add(issue(ca, "a.example", days=10))
        long = store.add(issue(ca, "a.example", days=300))
        assert store.lookup("a.example").fingerprint == long
        assert store.remove(long) and not store.remove(long)
        assert store.lookup("a.example").fingerprint == short
        store.remove(short)
        assert store.lookup("a.example") is store.default

    def test_expired_at_overrides_the_certificate_expiry(self, ca: trustme.CA) -> None:
        store = CertificateStore(LISTENER)
        store.add(issue(ca, "a.example", days=10), expired_at=4_000_000_000)
        late = store.add(issue(ca, "a.example", days=300))
        assert store.lookup("a.example").fingerprint != late

    def test_names_override_replaces_certificate_names(self, ca: trustme.CA) -> None:
        store = CertificateStore(LISTENER)
        fingerprint = store.add(bundle(ca.issue_cert("a.example"), names=["Other.Example."]))
        assert store.lookup("other.example").fingerprint == fingerprint
        assert store.lookup("a.example") is store.default
        assert store.get(fingerprint).covers("other.example")  # type: ignore[union-attr]

    def test_replace_adds_before_removing(self, ca: trustme.CA) -> None:
        store = CertificateStore(LISTENER)
        old = store.add(issue(ca, "a.example"))
        new = store.replace(old, issue(ca, "a.example", "b.example"))
        assert new != old and store.get(old) is None
        assert store.lookup("b.example").fingerprint == new
        with pytest.raises(TlsError):
            store.replace(new, CertificateAndKey(certificate="x", key="y"))
        assert store.get(new) is not None  # a failed replace keeps the old certificate
        assert store.replace(new, issue(ca, "c.example")) != new

    def test_contexts_are_built_at_first_use_and_refusals_fall_back(
        self, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = CertificateStore(LISTENER)
        good = store.add(issue(ca, "good.example"))
        refused = store.add(issue(ca, "refused.example"))
        assert store.get(good)._context is None  # type: ignore[union-attr]
        context = store.resolve("good.example")
        assert store.resolve("good.example") is context is not store.default_context

        def refuse(context: ssl.SSLContext, certificate: object) -> None:
            raise TlsError("refused")

        monkeypatch.setattr(tls_module, "load_certificate", refuse)
        assert store.resolve("refused.example") is store.default_context
        assert store.load_failures == 1
        assert store.get(refused) is not None


class TestHandshakes:
    def test_sni_selects_the_certificate_in_a_real_handshake(self, ca: trustme.CA) -> None:
        store = CertificateStore(LISTENER)
        store.add(issue(ca, "one.example"))
        store.add(issue(ca, "*.two.example"))
        assert served_names(store, ca, "one.example")[0] == {"one.example"}
        assert served_names(store, ca, "x.two.example")[0] == {"*.two.example"}
        assert served_names(store, ca, "unknown.example")[0] == set()  # built-in default

    def test_listener_default_certificate_and_alpn(self, ca: trustme.CA) -> None:
        cert = issue(ca, "default.example")
        listener = HttpsListenerConfig(
            address=LISTENER.address,
            certificate=cert.certificate,
            certificate_chain=cert.certificate_chain,
            key=cert.key,
        )
        store = CertificateStore(listener)
        names, alpn = served_names(store, ca, None, ["http/1.1", "h2"])
        assert names == {"default.example"} and alpn == "h2"
        assert served_names(store, ca, "x", ["http/1.1"])[1] == "http/1.1"
        with pytest.raises(TlsError, match="both"):
            CertificateStore(HttpsListenerConfig(address=LISTENER.address, key=cert.key))


class TestContextSettings:
    def test_defaults(self) -> None:
        context = build_context(LISTENER)
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.maximum_version is ssl.TLSVersion.TLSv1_3
        assert context.num_tickets == 4
        names = {c["name"] for c in context.get_ciphers()}
        assert "ECDHE-ECDSA-AES256-GCM-SHA384" in names and "DHE-RSA-AES128-SHA256" not in names

    def test_versions_map_and_unsupported_ones_are_ignored(self) -> None:
        only13 = HttpsListenerConfig(
            address=LISTENER.address, versions=[TlsVersion.TLS_V1_3, TlsVersion.TLS_V1_1]
        )
        context = build_context(only13)
        assert context.minimum_version is context.maximum_version is ssl.TLSVersion.TLSv1_3
        with pytest.raises(TlsError, match="versions"):
            build_context(
                HttpsListenerConfig(address=LISTENER.address, versions=[TlsVersion.SSL_V3])
            )

    def test_tls13_only_cipher_list_disables_tls12(self) -> None:
        listener = HttpsListenerConfig(
            address=LISTENER.address, cipher_list=["TLS13_AES_128_GCM_SHA256"]
        )
        assert build_context(listener).minimum_version is ssl.TLSVersion.TLSv1_3
        openssl_named = HttpsListenerConfig(
            address=LISTENER.address, cipher_list=["ECDHE-RSA-AES128-GCM-SHA256"]
        )
        assert [c["name"] for c in build_context(openssl_named).get_ciphers()][-1] == (
            "ECDHE-RSA-AES128-GCM-SHA256"
        )
        with pytest.raises(TlsError, match="none of the ciphers"):
            build_context(HttpsListenerConfig(address=LISTENER.address, cipher_list=["NO-SUCH"]))
        with pytest.raises(TlsError, match="unknown cipher"):
            build_context(HttpsListenerConfig(address=LISTENER.address, cipher_list=["RC4 please"]))

    def test_disable_http11_offers_h2_only_and_tickets(self, ca: trustme.CA) -> None:
        listener = HttpsListenerConfig(
            address=LISTENER.address, disable_http11=True, send_tls13_tickets=0
        )
        store = CertificateStore(listener)
        assert store.default_context.num_tickets == 0
        assert served_names(store, ca, "x", ["h2", "http/1.1"])[1] == "h2"
        assert served_names(store, ca, "x", ["http/1.1"])[1] is None
