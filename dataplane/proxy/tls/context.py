"""Stdlib `ssl.SSLContext`s for HTTPS listeners: protocol settings and certificate loading.

`build_context` maps an `HttpsListenerConfig` onto a server context:

- `versions`: TLS 1.2 and 1.3 (sozu's default is both); SSLv2/v3, TLS 1.0/1.1 are accepted
  in configuration and ignored, as rustls does. Only unsupported versions is an error.
- `cipher_list` (+ `cipher_suites`): sozu's IANA/rustls names are mapped to OpenSSL's for TLS
  1.2; TLS 1.3 suites are checked but OpenSSL's set (the same three) is used, because
  Python's `ssl` cannot restrict them. With no TLS 1.2 cipher left, TLS 1.2 is disabled.
- `groups_list`, `signature_algorithms`: Python 3.11's `ssl` has no API for them; OpenSSL's
  defaults apply (x25519, P-256, P-384, ...; ECDSA/RSA/RSA-PSS with SHA-2).
- `alpn_protocols`: default `h2`, `http/1.1`; `disable_http11` leaves `h2` only (the loop
  closes a connection that negotiated nothing).
- `send_tls13_tickets`: the number of TLS 1.3 session tickets.

OpenSSL loads certificates from files only, so `load_certificate` hands it PEM through an
anonymous in-memory file (memfd): keys never touch the disk.
"""

from __future__ import annotations

import datetime
from functools import cache
from typing import TYPE_CHECKING

from dataplane.command.backend_tls import memory_file
from dataplane.command.lazy_import import lazy_module
from dataplane.command.messages import (
    DEFAULT_CIPHER_LIST,
    CertificateAndKey,
    HttpsListenerConfig,
    TlsVersion,
)
from dataplane.proxy.tls.certificate import ParsedCertificate, TlsError, parse_certificate

if TYPE_CHECKING:
    import hashlib
    import ssl
else:  # OpenSSL (4.8 MB of memory) loads on first use: command/lazy_import.py
    hashlib = lazy_module("hashlib", globals())
    ssl = lazy_module("ssl", globals())

_VERSIONS = {  # names in ssl.TLSVersion (ssl is loaded by the first context built)
    TlsVersion.TLS_V1_2: "TLSv1_2",
    TlsVersion.TLS_V1_3: "TLSv1_3",
}
_TLS12_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
_TLS13_CIPHERS = {
    f"{prefix}{suite}"
    for prefix in ("TLS13_", "TLS_")
    for suite in ("AES_256_GCM_SHA384", "AES_128_GCM_SHA256", "CHACHA20_POLY1305_SHA256")
}
DEFAULT_ALPN = ("h2", "http/1.1")


def build_context(listener: HttpsListenerConfig) -> ssl.SSLContext:
    """A server context with the listener's protocol settings and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = sorted(ssl.TLSVersion[_VERSIONS[v]] for v in listener.versions if v in _VERSIONS)
    if listener.versions and not versions:
        raise TlsError("none of the configured TLS versions is supported (TLS 1.2, TLS 1.3)")
    versions = versions or [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
    context.minimum_version, context.maximum_version = versions[0], versions[-1]

    tls12 = _tls12_ciphers([*listener.cipher_list, *listener.cipher_suites] or DEFAULT_CIPHER_LIST)
    if tls12:
        try:
            context.set_ciphers(":".join(tls12))
        except ssl.SSLError:
            raise TlsError(f"OpenSSL knows none of the ciphers {tls12}") from None
    elif context.maximum_version is ssl.TLSVersion.TLSv1_3:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        raise TlsError("cipher_list leaves no cipher for the configured TLS versions")

    alpn = list(listener.alpn_protocols) or list(DEFAULT_ALPN)
    if listener.disable_http11:
        alpn = [p for p in alpn if p != "http/1.1"] or ["h2"]
    context.set_alpn_protocols(alpn)
    context.num_tickets = max(0, listener.send_tls13_tickets)
    # Server cipher order, no compression (CRIME), no renegotiation (a DoS lever).
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
    context.options |= ssl.OP_NO_RENEGOTIATION
    return context


def _tls12_ciphers(names: list[str]) -> list[str]:
    result = []
    for name in names:
        if name in _TLS12_CIPHERS:
            result.append(_TLS12_CIPHERS[name])
        elif name in _TLS13_CIPHERS:
            continue
        elif name.replace("-", "").replace("_", "").isalnum() and "-" in name:
            result.append(name)  # already an OpenSSL name; set_ciphers validates it
        else:
            raise TlsError(f"unknown cipher {name!r}")
    return result


def load_certificate(context: ssl.SSLContext, certificate: ParsedCertificate) -> None:
    """Install a validated certificate, its chain and key into `context`."""
    with (
        memory_file(certificate.certificate_pem()) as cert_path,
        memory_file(certificate.key_pem()) as key_path,
    ):
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as error:
            raise TlsError(f"OpenSSL refused the certificate: {error.reason}") from None


@cache
def builtin_default_certificate() -> ParsedCertificate:
    """A self-signed certificate served when nothing else matches (sozu ships one; we make
    one per process so that no private key is ever committed or shared between installs)."""
    from cryptography import x509  # 11+ MB of memory: only once an HTTPS listener needs it
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pysozu default certificate")])
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return ParsedCertificate(
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        leaf=leaf,
        chain=(),
        key=key,
        names=("pysozu default certificate",),
        expiration=int(leaf.not_valid_after_utc.timestamp()),
    )


def listener_default_certificate(listener: HttpsListenerConfig) -> ParsedCertificate:
    """The listener's own default certificate if it names one, else the built-in one."""
    if listener.certificate is None and listener.key is None:
        return builtin_default_certificate()
    if listener.certificate is None or listener.key is None:
        raise TlsError("a listener default certificate needs both certificate and key")
    return parse_certificate(
        CertificateAndKey(
            certificate=listener.certificate,
            certificate_chain=list(listener.certificate_chain),
            key=listener.key,
        )
    )
