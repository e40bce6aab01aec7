"""Client certificates in the handshake of an HTTPS listener (docs/client-certificates.md).

CPython's SNI callback can swap a connection's SSLContext, but OpenSSL keeps the verify mode
and flags of the context the connection was created with: a certificate cannot be asked for
from inside the callback. So a listener with `client_auth` frontends peeks at each ClientHello
first (tls/passthrough.py's `SniPeek`), and a connection whose SNI names such a frontend's
hostname is created with a context of its own: the certificate that SNI is served, plus the
frontend's CA bundle (and CRL: `VERIFY_CRL_CHECK_LEAF`), `CERT_OPTIONAL`. Other connections
are created as before, with the listener's default context: nobody else is asked for a
certificate, and listeners without `client_auth` never peek.

OpenSSL refuses, in the handshake, a certificate that does not chain to the CA bundle or is
revoked (the client gets an `unknown ca` / `certificate revoked` alert; nginx would answer
400). A missing one is let through: the request decides (routing/client_auth.py), as
`verify_depth`, checked after the handshake on the verified chain (Python's ssl cannot set
OpenSSL's depth). A resumed session has no verified chain: the depth is then counted along the
CA bundle from the leaf, and a leaf whose issuer is not in the bundle counts as too deep.

The index keeps one policy per hostname (exact, or `*.domain`): frontends of one hostname
with different `client_auth` settings get the first one's in key order, with a warning; the
requests of the others are answered 421 (routing/client_auth.py), never let through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dataplane.command.backend_tls import memory_file
from dataplane.command.lazy_import import lazy_module
from dataplane.command.messages import RequestHttpFrontend
from dataplane.proxy.routing.client_auth import ClientAuthPolicy, ClientConnection, SniCheck
from dataplane.proxy.tls.store import CertificateStore, StoredCertificate, TlsError

if TYPE_CHECKING:
    import ssl

    from cryptography import x509
else:  # OpenSSL and cryptography load with the first client certificate (tls/listener.py)
    ssl = lazy_module("ssl", globals())

log = logging.getLogger("dataplane.worker")


class ClientAuthIndex:
    """The `client_auth` policies of one HTTPS listener, by hostname, and their contexts."""

    __slots__ = ("_by_host", "_chosen", "_contexts", "_wildcard")

    def __init__(self) -> None:
        self._by_host: dict[str, dict[str, ClientAuthPolicy]] = {}  # hostname -> key -> policy
        self._chosen: dict[str, ClientAuthPolicy] = {}
        self._wildcard: dict[str, ClientAuthPolicy] = {}  # "*.example.com" under "example.com"
        self._contexts: dict[tuple[str, bytes], ssl.SSLContext] = {}

    @property
    def active(self) -> bool:
        return bool(self._chosen or self._wildcard)

    def update(self, key: str, front: RequestHttpFrontend | None, hostname: str) -> None:
        """Frontend `key` of `hostname` now has `front` (None: removed)."""
        name = hostname.lower().removesuffix(".")
        policies = self._by_host.setdefault(name, {})
        policies.pop(key, None)
        if front is not None and front.client_auth is not None:
            policies[key] = ClientAuthPolicy(front.client_auth)
        table, short = (self._wildcard, name[2:]) if name.startswith("*.") else (self._chosen, name)
        if not policies:
            del self._by_host[name]
            table.pop(short, None)
            return
        ordered = sorted(policies.values(), key=lambda p: p.key)
        if ordered[0].key != ordered[-1].key:
            log.warning("frontends of %s differ in client_auth: the handshake uses one", name)
        table[short] = ordered[0]

    def match(self, server_name: str) -> ClientAuthPolicy | None:
        """The policy of a (lowercased) SNI: exact first, then `*.` one label up."""
        policy = self._chosen.get(server_name)
        if policy is None and self._wildcard:
            _, dot, parent = server_name.partition(".")
            if dot and parent:
                policy = self._wildcard.get(parent)
        return policy

    def context(
        self, stored: StoredCertificate, policy: ClientAuthPolicy, callback: Callable[..., None]
    ) -> ssl.SSLContext:
        """The context serving `stored` and asking for `policy`'s certificates (cached)."""
        cache_key = (stored.fingerprint, policy.key)
        context = self._contexts.get(cache_key)
        if context is None:
            if len(self._contexts) >= 4096:
                self._contexts.clear()  # bounded: rebuilt on demand
            context = stored.new_context()
            config = policy.config
            context.verify_mode = ssl.CERT_OPTIONAL
            bundle = config.ca + ("\n" + config.crl if config.crl else "")
            with memory_file(bundle.encode()) as path:
                context.load_verify_locations(cafile=path)  # certificates and CRLs
            if config.crl:
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
            context.sni_callback = callback
            self._contexts[cache_key] = context
        return context

    def handshake(
        self, store: CertificateStore, server_name: str, address: object
    ) -> tuple[ssl.SSLContext, ClientAuthPolicy] | None:
        """The context a connection with this SNI is created with, when it asks for a client
        certificate (None: it does not, or its context cannot be built: the connection gets
        none, and the requests of its `client_auth` routes 421, never through)."""
        name = server_name.lower().removesuffix(".")
        policy = self.match(name)
        if policy is None:
            return None
        stored = store.lookup(name)
        try:
            context = self.context(stored, policy, _recorder(stored))
        except (TlsError, ssl.SSLError, ValueError, OSError) as error:
            log.error("client_auth for %s on %s unusable: %s", name, address, error)
            return None
        return context, policy

    def clear(self) -> None:
        self._contexts.clear()

    def forget(self, fingerprint: str) -> None:
        """A certificate removed: drop its contexts (live connections keep theirs)."""
        for key in [k for k in self._contexts if k[0] == fingerprint]:
            del self._contexts[key]


def _recorder(stored: StoredCertificate) -> Callable[..., None]:
    def on_server_name(connection: Any, server_name: str | None, _: object) -> None:
        # The context was chosen by the peeked SNI (the same bytes): only remember it.
        connection.served = stored
        if server_name:
            connection.server_name = server_name.lower().removesuffix(".")

    return on_server_name


def client_connection(
    tls: Any, policy: ClientAuthPolicy, binding: SniCheck | None
) -> ClientConnection:
    """What an established connection (made with `policy`'s context) learnt of its client."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = tls.getpeercert(binary_form=True)
    if not der:
        return ClientConnection(binding, policy.key, None, None, None, None)
    try:
        leaf = x509.load_der_x509_certificate(der)
        subject, issuer = leaf.subject.rfc4514_string(), leaf.issuer.rfc4514_string()
    except ValueError:  # verified by OpenSSL, yet unreadable here: refused per request
        return ClientConnection(binding, policy.key, "", "", None, "certificate unreadable")
    chain = tls._sslobj.get_verified_chain()  # 3.13: SSLSocket.get_verified_chain
    # A resumed session has no verified chain: count along the CA bundle.
    intermediates = len(chain) - 2 if chain else _bundle_depth(leaf, policy.config.ca)
    depth = policy.config.verify_depth
    failure = None
    if intermediates is None or intermediates > depth:
        failure = "certificate chain too long"
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return ClientConnection(binding, policy.key, subject, issuer, pem, failure)


def _bundle_depth(leaf: x509.Certificate, bundle: str) -> int | None:
    """Intermediates between `leaf` and a self-signed CA, all found in `bundle` (None: the
    path leaves the bundle)."""
    from cryptography import x509

    authorities = x509.load_pem_x509_certificates(bundle.encode())
    current, count = leaf, -1
    for _ in range(len(authorities) + 1):
        issuer = next((c for c in authorities if c.subject == current.issuer), None)
        if issuer is None:
            return None
        count += 1
        if issuer.subject == issuer.issuer:
            return count
        current = issuer
    return None
