"""An HTTPS listener in a worker: an HTTP listener whose connections start with TLS.

Everything HTTP (routes, answers, timeouts, forwarding) is the HTTP listener's; this adds the
listener's `CertificateStore` (SNI choice, certificates changed at run time), strict SNI
binding, HSTS, and `https` as the scheme seen by policies and forwarded headers. Connections
are accepted here, finish their handshake in a `TlsHandshake`, then live as `HttpsSession`s:
an `HttpSession` over a `TlsStream`. Plain HTTP listeners run none of this code.

The rules without sockets (ALPN offered, HSTS, SNI binding, expiry) are in `tls/policy.py`,
the session over TLS in `tls/session.py`, the handshake and the TLS stream in
`tls/transport.py`.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from dataplane.command.listener_update import merge_listener_update
from dataplane.command.messages import (
    CertificateAndKey,
    HttpsListenerConfig,
    QueryCertificatesFilters,
    RequestHttpFrontend,
    UpdateHttpsListenerConfig,
)
from dataplane.command.responses import (
    CertificatesByAddress,
    CertificateSummary,
    ListOfCertificatesByAddress,
)
from dataplane.command.state import frontend_key
from dataplane.proxy.listener import HttpListener
from dataplane.proxy.mux.h2_session import H2Session
from dataplane.proxy.mux.session_fields import EPOLLIN
from dataplane.proxy.proxy_protocol.accept import accept_proxied
from dataplane.proxy.routing.client_auth import SniCheck
from dataplane.proxy.tls.client_auth import ClientAuthIndex, client_connection
from dataplane.proxy.tls.passthrough import PassthroughRoutes, SniPeek
from dataplane.proxy.tls.policy import SniBinding, served_alpn
from dataplane.proxy.tls.session import HttpsSession
from dataplane.proxy.tls.store import CertificateStore, StoredCertificate, TlsError

if TYPE_CHECKING:
    from dataplane.proxy.clusters import HttpProxy
    from dataplane.proxy.mux.host import Host
    from dataplane.proxy.observability.metrics import ListenerFigures
    from dataplane.proxy.proxy_protocol.header import Peer
    from dataplane.proxy.tls.stream import TlsStream
    from dataplane.proxy.tls.transport import TlsHandshake, TlsSocket

log = logging.getLogger("dataplane.worker")


class HttpsListener(HttpListener):
    """An HTTP listener with certificates; `open_session` turns a handshake into a session."""

    scheme = "https"

    def __init__(self, proxy: HttpProxy, config: HttpsListenerConfig) -> None:
        self._fronts: dict[str, RequestHttpFrontend] = {}
        self._certificates: dict[str, tuple[CertificateAndKey, int | None]] = {}
        self._binding_names: dict[str, tuple[str, ...]] = {}
        self.handshake_failures = 0
        self.handshake_timeouts = 0
        self.refused_http11 = 0  # connections without h2 on a disable_http11 listener
        self.passthrough = PassthroughRoutes()  # TLS passthrough frontends (passthrough.py)
        self._passthrough_keys: dict[str, RequestHttpFrontend] = {}
        self.passthrough_connections = 0
        self.client_auth = ClientAuthIndex()  # client certificates by SNI (tls/client_auth.py)
        self.client_cert_refused = 0  # handshakes that failed on the client's certificate
        self.certificates = self._new_store(config)
        self.tls_config = config
        # Loaded with the first HTTPS listener (they load OpenSSL), not at each connection: a
        # function-level import costs ~4,000 instructions per call.
        from dataplane.proxy.tls.stream import TlsStream
        from dataplane.proxy.tls.transport import TlsHandshake

        self._handshake_type: type[TlsHandshake] = TlsHandshake
        self._stream_type: type[TlsStream] = TlsStream
        super().__init__(proxy, config)
        self._apply_tls_settings(config)

    # -- configuration ------------------------------------------------------------------------

    def _new_store(self, config: HttpsListenerConfig) -> CertificateStore:
        # sozu builds its TLS config from cipher_list alone (cipher_suites is only kept for
        # compatibility, and the config fills it with the defaults): so do we.
        served = msgspec.structs.replace(
            config, alpn_protocols=served_alpn(config), disable_http11=False, cipher_suites=[]
        )
        store = CertificateStore(served)
        store.default_context.sni_callback = self._on_server_name(store)
        return store

    def _apply_tls_settings(self, config: HttpsListenerConfig) -> None:
        self.tls_config = config
        self.strict_sni = config.strict_sni_binding is not False  # sozu's default: true
        self.default_names = self._names_for(self.certificates.default, ())

    def update(self, patch: UpdateHttpsListenerConfig) -> None:
        config = merge_listener_update(self.tls_config, patch)  # as the state merged it
        if patch.alpn_protocols is not None or patch.disable_http11 is not None:
            store = self._new_store(config)  # new contexts; live connections keep theirs
            for certificate, expired_at in self._certificates.values():
                store.add(certificate, expired_at)
            self.certificates = store
            self.client_auth.clear()  # its contexts were built with the old settings
        self.configure(config)
        self.set_answers(config)
        self._apply_tls_settings(config)
        if patch.hsts is not None:
            for key, front in list(self._fronts.items()):
                self.router.remove_frontend(front)
                self._add_route(key, front)

    # -- routes (a frontend without its own HSTS inherits the listener's) ---------------------

    def add_frontend(self, front: RequestHttpFrontend) -> None:
        if front.passthrough:
            self._passthrough_keys[frontend_key(front)] = front
            self.passthrough.add(self, front)
            return
        self._add_route(frontend_key(front), front)

    def _add_route(self, key: str, front: RequestHttpFrontend) -> None:
        self._fronts[key] = front
        if front.client_auth is not None or self.client_auth.active:
            self.client_auth.update(key, front, front.hostname)
        if front.hsts is None and self.tls_config.hsts is not None:
            front = msgspec.structs.replace(front, hsts=self.tls_config.hsts)
        super().add_frontend(front)

    def remove_frontend(self, front: RequestHttpFrontend) -> None:
        passthrough = self._passthrough_keys.pop(frontend_key(front), None)
        if passthrough is not None:
            self.passthrough.remove(passthrough)
            return
        key = frontend_key(front)
        if self._fronts.pop(key, None) is not None and self.client_auth.active:
            self.client_auth.update(key, None, front.hostname)
        super().remove_frontend(front)

    # -- certificates -------------------------------------------------------------------------

    def add_certificate(self, certificate: CertificateAndKey, expired_at: int | None) -> str:
        fingerprint = self.certificates.add(certificate, expired_at)
        self._certificates[fingerprint] = (certificate, expired_at)
        stored = self.certificates.get(fingerprint)
        if stored is not None and stored.expiration < time.time():  # served, as sozu does
            log.warning(
                "certificate %s (%s) on %s expired on %s: served anyway",
                fingerprint,
                ", ".join(stored.certificate.names),
                self.config.address,
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stored.expiration)),
            )
        return fingerprint

    def remove_certificate(self, fingerprint: str) -> None:
        self.certificates.remove(fingerprint)
        self._certificates.pop(fingerprint.lower(), None)
        self._binding_names.pop(fingerprint.lower(), None)
        self.client_auth.forget(fingerprint.lower())

    def replace_certificate(
        self, old: str, certificate: CertificateAndKey, expired_at: int | None
    ) -> None:
        fingerprint = self.add_certificate(certificate, expired_at)  # new in, then old out
        if fingerprint != old.lower():
            self.remove_certificate(old)

    # -- connections --------------------------------------------------------------------------

    def _on_server_name(self, store: CertificateStore) -> Callable[..., None]:
        def on_server_name(connection: Any, server_name: str | None, _: object) -> None:
            # Inside the handshake (connection: the TlsSocket owning the SSL object): pick
            # the certificate, remember it, never raise.
            stored = store.lookup(server_name)
            try:
                context = stored.context
            except TlsError:
                store.load_failures += 1
                stored = store.default
                context = stored.context
            obj = connection._sslobj
            if obj is not None and obj.context is not context:
                obj.context = context
            connection.served = stored
            if server_name:
                connection.server_name = server_name.lower().removesuffix(".")

        return on_server_name

    def start_handshake(
        self,
        loop: Host,
        sock: socket.socket,
        peer: Peer,
        figures: ListenerFigures | None,
        server_name: str | None = None,
    ) -> None:
        """An accepted connection (its PROXY header and SNI peek done) starts its handshake."""
        chosen = None
        if server_name and self.client_auth.active:
            chosen = self.client_auth.handshake(self.certificates, server_name, self.config.address)
        try:
            if chosen is None:
                handshake = self._handshake_type(loop, self, sock, peer)
            else:
                handshake = self._handshake_type(loop, self, sock, peer, chosen[0])
                handshake.tls.client_auth = chosen[1]
        except OSError:  # ssl.SSLError is one
            sock.close()
            if figures is not None:
                figures.closed()
            return
        handshake.figures = figures
        loop.sessions.add(handshake)
        handshake.on_event(EPOLLIN)  # the ClientHello may already be there

    def open_session(
        self, loop: Host, tls: TlsSocket, peer: Peer
    ) -> HttpsSession | H2Session | None:
        """The session of an established connection: HTTP/2 when ALPN chose `h2`; None (to
        be closed) when it did not and the listener has `disable_http11`."""
        binding: SniCheck | None = None
        if self.strict_sni:
            served = tls.served or self.certificates.default
            if served is self.certificates.default:
                binding = SniBinding(self.default_names, tls.server_name)
            else:
                names = self._binding_names.get(served.fingerprint)
                if names is None:
                    names = self._binding_names[served.fingerprint] = self._names_for(
                        served, self._override_names(served.fingerprint)
                    )
                binding = SniBinding(names, None)
        if tls.client_auth is not None:
            binding = client_connection(tls, tls.client_auth, binding)
        if tls.selected_alpn_protocol() == "h2":
            return H2Session(loop, self, self._stream_type(tls), peer, binding)
        if self.tls_config.disable_http11:
            self.refused_http11 += 1
            return None
        return HttpsSession(loop, self, self._stream_type(tls), peer, binding)

    def _override_names(self, fingerprint: str) -> tuple[str, ...]:
        known = self._certificates.get(fingerprint)
        return tuple(known[0].names) if known is not None else ()

    @staticmethod
    def _names_for(stored: StoredCertificate, override: tuple[str, ...]) -> tuple[str, ...]:
        """The names strict SNI binding accepts: the override, else the SAN, else the CN."""
        if override:
            return tuple(name.lower() for name in override)
        from cryptography import x509  # loaded already: the certificate was parsed with it

        leaf = stored.certificate.leaf
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = san.value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        return tuple(n.lower() for n in names) if names else stored.names


def tls_acceptor(loop: Host, listener: HttpsListener) -> Callable[[int], None]:
    """The accept handler of an HTTPS listener: each connection starts its handshake (after
    its PROXY header, on an `expect_proxy` listener; after its SNI is peeked, when the
    listener has passthrough frontends)."""

    def start(sock: socket.socket, peer: Peer, figures: ListenerFigures | None) -> None:
        if not (listener.passthrough.active or listener.client_auth.active):
            listener.start_handshake(loop, sock, peer, figures)
            return
        try:
            peek = SniPeek(loop, listener, sock, peer, figures)
        except OSError:
            sock.close()
            if figures is not None:
                figures.closed()
            return
        loop.sessions.add(peek)
        peek.on_event(EPOLLIN)  # the ClientHello may already be there

    metrics_name = str(listener.config.address)  # formatted once, not per accept

    def on_accept(mask: int) -> None:
        if listener.expect_proxy:
            accept_proxied(loop, listener, start, nodelay=True)
            return
        sessions = loop.sessions
        figures = loop.metrics.listener(metrics_name)
        for sock, peer in listener.accept_batch(loop.max_connections - len(sessions)):
            loop.counters.accepted += 1
            figures.opened()
            start(sock, peer, figures)
        if len(sessions) >= loop.max_connections:
            loop.pause_accept()  # the rest waits in the kernel's backlog

    return on_accept


def tls_counters(proxy: HttpProxy) -> dict[str, int]:
    """The worker's TLS figures, summed over its HTTPS listeners (for `query_metrics`)."""
    https = [found for found in proxy.listeners.values() if isinstance(found, HttpsListener)]
    return {
        "tls.handshake.failures": sum(h.handshake_failures for h in https),
        "tls.handshake.timeouts": sum(h.handshake_timeouts for h in https),
        "https.alpn.rejected.http11": sum(h.refused_http11 for h in https),
        "tls.default_cert_used": sum(h.certificates.default_cert_used for h in https),
        "tls.certificate.load_failures": sum(h.certificates.load_failures for h in https),
        "tls.passthrough.connections": sum(h.passthrough_connections for h in https),
        "tls.client_cert.refused": sum(h.client_cert_refused for h in https),
    }


def tls_gauges(proxy: HttpProxy) -> dict[str, int]:
    """Certificate expiry, as sozu names it: the soonest `not_after` (unix seconds, 0 with no
    certificate) and how many served certificates have expired. Read at scrape time only."""
    expirations = [
        stored.expiration
        for listener in proxy.listeners.values()
        if isinstance(listener, HttpsListener)
        for stored in listener.certificates
    ]
    now = time.time()
    return {
        "tls.cert.min_expires_at_seconds": min(expirations, default=0),
        "tls.cert.expired": sum(1 for expiration in expirations if expiration < now),
    }


def certificates_by_address(
    proxy: HttpProxy, filters: QueryCertificatesFilters
) -> ListOfCertificatesByAddress:
    """What the worker serves (`certificate list --workers`): one summary per certificate
    name, as sozu's workers answer from their certificate resolver."""
    wanted = filters.fingerprint.strip().lower() if filters.fingerprint else None
    domain = filters.domain.lower() if filters.domain else None
    found = []
    for address, listener in sorted(proxy.listeners.items()):
        if not isinstance(listener, HttpsListener):
            continue
        summaries = [
            CertificateSummary(domain=name, fingerprint=stored.fingerprint)
            for stored in listener.certificates
            if (wanted is None or stored.fingerprint == wanted)
            and (domain is None or stored.covers(domain))
            for name in stored.names
        ]
        found.append(CertificatesByAddress(address=address, certificate_summaries=summaries))
    return ListOfCertificatesByAddress(certificates=found)


def apply_tls(proxy: HttpProxy, verb: str, body: Any) -> None:
    """Mirror an HTTPS state request (already accepted by the ConfigState) on the worker."""
    if verb == "add_https_listener":
        proxy.listeners[body.address] = HttpsListener(proxy, body)
        return
    if verb not in _HTTPS_VERBS:
        return
    listener = proxy.listeners.get(body.address)
    if not isinstance(listener, HttpsListener):
        raise TlsError(f"no HTTPS listener at {body.address}")
    if verb == "update_https_listener":
        listener.update(body)
    elif verb == "add_https_frontend":
        listener.add_frontend(body)
    elif verb == "remove_https_frontend":
        listener.remove_frontend(body)
    elif verb == "add_certificate":
        listener.add_certificate(body.certificate, body.expired_at)
    elif verb == "replace_certificate":
        listener.replace_certificate(
            body.old_fingerprint, body.new_certificate, body.new_expired_at
        )
    elif verb == "remove_certificate":
        listener.remove_certificate(body.fingerprint)


_HTTPS_VERBS = frozenset(
    {
        "update_https_listener",
        "add_https_frontend",
        "remove_https_frontend",
        "add_certificate",
        "replace_certificate",
        "remove_certificate",
    }
)
