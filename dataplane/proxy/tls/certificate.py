"""Certificate facts: parse and validate a `CertificateAndKey` before it can be served.

Checks, each with its own error message: the leaf and chain are PEM certificates, the key is
an unencrypted PEM private key whose public half is the leaf's, and the chain is in order
(each certificate is issued and signed by the next one). A copy of the leaf inside the chain,
as in a `fullchain.pem`, is dropped rather than refused; extra certificates after the leaf in
the `certificate` field are treated as the start of the chain.

Identity is the hex SHA-256 of the leaf's DER, as in sozu. The names a certificate answers
for are its subject CN and SAN dNSNames, or the explicit `names` override, lowercased.
`cryptography` (11+ MB of memory) is imported when a certificate is first parsed, so that a
worker with no HTTPS listener never loads it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.command.lazy_import import lazy_module
from dataplane.command.messages import CertificateAndKey

if TYPE_CHECKING:
    import hashlib
else:  # OpenSSL (4.8 MB of memory) loads on first use: command/lazy_import.py
    hashlib = lazy_module("hashlib", globals())

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


class TlsError(Exception):
    """A certificate, key or TLS setting that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class ParsedCertificate:
    fingerprint: str
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # intermediates, leaf excluded, in issuing order
    key: PrivateKeyTypes
    names: tuple[str, ...]
    expiration: int  # unix seconds: `expired_at` if given, else the leaf's notAfter

    def certificate_pem(self) -> bytes:
        """Leaf then chain, the layout OpenSSL's `load_cert_chain` expects."""
        from cryptography.hazmat.primitives import serialization

        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, *self.chain)
        )

    def key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def leaf_fingerprint(certificate_pem: str) -> str:
    """Hex SHA-256 of the first certificate's DER (TlsError if it is not a PEM certificate)."""
    from cryptography.hazmat.primitives import serialization

    leaf = _load_certificates(certificate_pem, "certificate")[0]
    return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()


def parse_certificate(
    certificate: CertificateAndKey, expired_at: int | None = None
) -> ParsedCertificate:
    from cryptography.hazmat.primitives import serialization

    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    leaf, *extra = _load_certificates(certificate.certificate, "certificate")
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    chain = list(extra)
    for index, pem in enumerate(certificate.certificate_chain):
        chain.extend(_load_certificates(pem, f"certificate_chain[{index}]"))
    chain = [c for c in chain if c.public_bytes(serialization.Encoding.DER) != leaf_der]
    _check_chain_order([leaf, *chain])

    key = _load_key(certificate.key)
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise TlsError("the private key does not match the certificate's public key")

    names = tuple(dict.fromkeys(_normalize_name(n) for n in certificate.names or _names_of(leaf)))
    if not names or not all(names):
        raise TlsError("the certificate has no usable name (no CN or DNS SAN, or an empty name)")
    expiration = expired_at if expired_at is not None else int(leaf.not_valid_after_utc.timestamp())
    return ParsedCertificate(
        fingerprint=hashlib.sha256(leaf_der).hexdigest(),
        leaf=leaf,
        chain=tuple(chain),
        key=key,
        names=names,
        expiration=expiration,
    )


def _load_certificates(pem: str, field: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except (ValueError, UnicodeEncodeError) as error:
        raise TlsError(f"{field} is not a valid PEM certificate: {error}") from None
    if not certificates:
        raise TlsError(f"{field} holds no certificate")
    return certificates


def _load_key(pem: str) -> PrivateKeyTypes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise TlsError("the private key is encrypted; give it unencrypted") from None
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as error:
        raise TlsError(f"the private key is not a valid PEM key: {error}") from None


def _check_chain_order(certificates: list[x509.Certificate]) -> None:
    from cryptography.exceptions import InvalidSignature

    for index, (child, issuer) in enumerate(itertools.pairwise(certificates)):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise TlsError(
                f"chain out of order: certificate {index} ({child.subject.rfc4514_string()}) "
                f"is not issued by certificate {index + 1} ({issuer.subject.rfc4514_string()})"
            ) from None


def _names_of(leaf: x509.Certificate) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names.extend(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return names


def _normalize_name(name: str) -> str:
    return name.strip().lower().removesuffix(".")


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 matching of a certificate name against a host: `*.` covers one label."""
    if pattern == host:
        return True
    if pattern.startswith("*."):
        label, dot, suffix = host.partition(".")
        return bool(label) and bool(dot) and suffix == pattern[2:]
    return False
