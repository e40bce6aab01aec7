"""The certificates of one HTTPS listener and the SNI choice between them (sozu 6.7).

Certificates are added, replaced and removed at run time, by fingerprint (hex SHA-256 of the
leaf's DER). Each gets its own `ssl.SSLContext` with the listener's settings, built at its
first handshake and kept, so the SNI callback only swaps a context picked by dict lookups:

1. the exact server name (lowercased, trailing dot removed);
2. the wildcard `*.` + the name without its first label;
3. the listener's default certificate (its own, or a built-in self-signed one).

Among several certificates for one name, the longest-lived (latest expiry, or the
`expired_at` override) is served; removing it falls back to the next one. A client without
SNI gets the default certificate (sozu refuses that handshake; serving the default is what
clients reaching the proxy by IP address expect).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from dataplane.command.lazy_import import lazy_module
from dataplane.command.messages import CertificateAndKey, HttpsListenerConfig
from dataplane.proxy.tls.certificate import (
    ParsedCertificate,
    TlsError,
    leaf_fingerprint,
    name_matches,
    parse_certificate,
)
from dataplane.proxy.tls.context import (
    build_context,
    listener_default_certificate,
    load_certificate,
)

if TYPE_CHECKING:
    import ssl
else:  # OpenSSL (4.8 MB of memory) loads on first use: command/lazy_import.py
    ssl = lazy_module("ssl", globals())

__all__ = [
    "CertificateStore",
    "StoredCertificate",
    "TlsError",
    "build_context",
    "leaf_fingerprint",
    "name_matches",
]


class StoredCertificate:
    """A served certificate: its facts, and the context serving it, built on first use.

    OpenSSL takes milliseconds to load a certificate, so a listener with thousands of them
    would block the worker for seconds if every context were built when added; `add` already
    validated the certificate with `cryptography`, so building late is safe.
    """

    __slots__ = ("_context", "_listener", "certificate")

    def __init__(self, certificate: ParsedCertificate, listener: HttpsListenerConfig) -> None:
        self.certificate = certificate
        self._listener = listener
        self._context: ssl.SSLContext | None = None

    @property
    def context(self) -> ssl.SSLContext:
        """The context serving this certificate (TlsError if OpenSSL refuses it)."""
        if self._context is None:
            self._context = self.new_context()
        return self._context

    def new_context(self) -> ssl.SSLContext:
        """A fresh context with the listener's settings serving this certificate."""
        context = build_context(self._listener)
        load_certificate(context, self.certificate)
        return context

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint

    @property
    def names(self) -> tuple[str, ...]:
        return self.certificate.names

    @property
    def expiration(self) -> int:
        return self.certificate.expiration

    def covers(self, host: str) -> bool:
        """Whether `host` is one of this certificate's names (RFC 6125 wildcards)."""
        return any(name_matches(name, host) for name in self.names)


class CertificateStore:
    """Per HTTPS listener. `default_context` is the one to wrap accepted sockets with."""

    def __init__(self, listener: HttpsListenerConfig) -> None:
        self._listener = listener
        self._certificates: dict[str, StoredCertificate] = {}
        self._by_name: dict[str, list[StoredCertificate]] = {}  # longest-lived first
        self.default = StoredCertificate(listener_default_certificate(listener), listener)
        self.default.context.sni_callback = self._on_server_name  # built now: errors surface
        self.default_cert_used = 0  # handshakes that fell back to the default certificate
        self.load_failures = 0  # certificates OpenSSL refused at first use

    @property
    def default_context(self) -> ssl.SSLContext:
        return self.default.context

    def __len__(self) -> int:
        return len(self._certificates)

    def __iter__(self) -> Iterator[StoredCertificate]:
        return iter(self._certificates.values())

    def get(self, fingerprint: str) -> StoredCertificate | None:
        return self._certificates.get(fingerprint.lower())

    def add(self, cert: CertificateAndKey, expired_at: int | None = None) -> str:
        """Validate and install a certificate; adding a known fingerprint again is a no-op."""
        parsed = parse_certificate(cert, expired_at)
        if parsed.fingerprint in self._certificates:
            return parsed.fingerprint
        stored = StoredCertificate(parsed, self._listener)
        self._certificates[parsed.fingerprint] = stored
        for name in parsed.names:
            candidates = self._by_name.setdefault(name, [])
            candidates.append(stored)
            candidates.sort(key=lambda c: c.expiration, reverse=True)
        return parsed.fingerprint

    def remove(self, fingerprint: str) -> bool:
        stored = self._certificates.pop(fingerprint.lower(), None)
        if stored is None:
            return False
        for name in stored.names:
            remaining = [c for c in self._by_name.get(name, ()) if c is not stored]
            if remaining:
                self._by_name[name] = remaining
            else:
                self._by_name.pop(name, None)
        return True

    def replace(
        self, old_fingerprint: str, new_cert: CertificateAndKey, expired_at: int | None = None
    ) -> str:
        """Add the new certificate, then remove the old one: no moment without either."""
        fingerprint = self.add(new_cert, expired_at)
        if old_fingerprint.lower() != fingerprint:
            self.remove(old_fingerprint)
        return fingerprint

    def lookup(self, server_name: str | None) -> StoredCertificate:
        """The certificate served for an SNI name (the default one if nothing matches)."""
        if server_name:
            name = server_name.lower().removesuffix(".")
            candidates = self._by_name.get(name)
            if candidates is None:
                label, dot, suffix = name.partition(".")
                if label and dot:
                    candidates = self._by_name.get("*." + suffix)
            if candidates:
                return candidates[0]
        self.default_cert_used += 1
        return self.default

    def resolve(self, server_name: str | None) -> ssl.SSLContext:
        """The context to serve for an SNI name; the default one if that one cannot load."""
        stored = self.lookup(server_name)
        try:
            return stored.context
        except TlsError:
            self.load_failures += 1
            return self.default.context

    def _on_server_name(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object
    ) -> None:
        # Runs inside the handshake: swap in the chosen certificate's context, never raise.
        context = self.resolve(server_name)
        if connection.context is not context:
            connection.context = context
