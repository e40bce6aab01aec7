"""An HTTPS listener in a worker: an HTTP listener whose connections start with TLS.

Everything HTTP (routes, answers, timeouts, forwarding) is the HTTP listener's; this adds the
listener's `CertificateStore` (SNI choice, certificates changed at run time), strict SNI
binding, HSTS, and `https` as the scheme seen by policies and forwarded headers. Connections
are accepted here, finish their handshake in a `TlsHandshake`, then live as `HttpsSession`s:
an `HttpSession` over a `TlsStream`. Plain HTTP listeners run none of this code.

ALPN: only `http/1.1` is advertised until the HTTP/2 engine exists; `h2` in the configuration
is dropped with a warning, and a listener that would be left with `h2` only is refused.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography import x509

from dataplane.command.messages import (
    CertificateAndKey,
    Header,
    HeaderPosition,
    HstsConfig,
    HttpsListenerConfig,
    RequestHttpFrontend,
    UpdateHttpsListenerConfig,
)
from dataplane.command.state import frontend_key
from dataplane.proxy.forwarding import ConnectionContext
from dataplane.proxy.listener import HttpListener
from dataplane.proxy.session import HttpSession
from dataplane.proxy.session_fields import CLOSED, EPOLLIN, EPOLLOUT
from dataplane.proxy.tls import CertificateStore, StoredCertificate, TlsError, name_matches
from dataplane.proxy.tls_certificate import parse_certificate
from dataplane.proxy.tls_transport import TlsHandshake, TlsSocket, TlsStream

if TYPE_CHECKING:
    from dataplane.proxy.clusters import HttpProxy
    from dataplane.proxy.worker import Loop

log = logging.getLogger("dataplane.worker")

HTTP11 = "http/1.1"
DEFAULT_HSTS_MAX_AGE = 31_536_000
MAX_PENDING_READS = 16  # TLS records drained per readiness event before yielding


def served_alpn(config: HttpsListenerConfig) -> list[str]:
    """The ALPN list actually advertised: `http/1.1` only (TlsError if that is excluded)."""
    wanted = config.alpn_protocols or ["h2", HTTP11]
    if config.disable_http11 or HTTP11 not in wanted:
        raise TlsError(
            f"listener {config.address}: only h2 would be offered, and HTTP/2 is not served yet"
        )
    if "h2" in config.alpn_protocols:
        log.warning("listener %s: h2 is not served yet; ALPN offers http/1.1", config.address)
    return [HTTP11]


def hsts_value(hsts: HstsConfig | None) -> str | None:
    if hsts is None or not hsts.enabled:
        return None
    max_age = hsts.max_age if hsts.max_age is not None else DEFAULT_HSTS_MAX_AGE
    value = f"max-age={max_age}"
    if hsts.include_subdomains:
        value += "; includeSubDomains"
    if hsts.preload:
        value += "; preload"
    return value


class SniBinding:
    """The host names a request may carry on one TLS connection (strict SNI binding, 421).

    A certificate found by SNI covers its names (RFC 6125 wildcards; the CN only when there is
    no SAN). The default certificate, served for an unknown SNI, covers exactly that SNI.
    """

    __slots__ = ("_exact", "_names")

    def __init__(self, names: tuple[str, ...], exact: str | None) -> None:
        self._names = names
        self._exact = exact

    def allows(self, host: str) -> bool:
        if host.startswith("*"):
            return False  # a wildcard-looking Host is never expanded
        host = host.lower()
        if host == self._exact:
            return True
        return any(name_matches(name, host) for name in self._names)


class HttpsSession(HttpSession):
    """An HTTP session over TLS: drains what OpenSSL decrypted ahead of the epoll events."""

    __slots__ = ("sni_binding",)

    def __init__(
        self,
        loop: Loop,
        listener: HttpsListener,
        stream: TlsStream,
        peer: tuple[str, int],
        binding: SniBinding | None,
    ) -> None:
        self.sni_binding = binding
        super().__init__(loop, listener, stream, peer)  # type: ignore[arg-type]

    def on_front(self, events: int) -> None:
        super().on_front(events)
        stream: TlsStream = self.sock  # type: ignore[assignment]
        for _ in range(MAX_PENDING_READS):
            if self.phase == CLOSED or not self.mask & EPOLLIN or not stream.pending():
                break
            self._read_front()
        if self.phase != CLOSED and self.mask & EPOLLOUT and self.to_front is None:
            self._sync_masks()  # the read nudge (below) has done its job

    def _sync_masks(self) -> None:
        super()._sync_masks()
        mask = self.mask
        # Decrypted bytes waiting inside OpenSSL raise no epoll event: ask for writability
        # once, which fires at once and lets on_front read them.
        reading = self.phase != CLOSED and mask & EPOLLIN and not mask & EPOLLOUT
        if reading and self.sock.pending():  # type: ignore[attr-defined]
            self.mask = mask | EPOLLOUT
            self.loop.modify(self.fd, self.mask)


class HttpsListener(HttpListener):
    """An HTTP listener with certificates; `open_session` turns a handshake into a session."""

    scheme = "https"

    def __init__(self, proxy: HttpProxy, config: HttpsListenerConfig) -> None:
        self._fronts: dict[str, RequestHttpFrontend] = {}
        self._certificates: dict[str, tuple[CertificateAndKey, int | None]] = {}
        self._binding_names: dict[str, tuple[str, ...]] = {}
        self.handshake_failures = 0
        self.handshake_timeouts = 0
        self.certificates = self._new_store(config)
        self.tls_config = config
        super().__init__(proxy, config)
        self._apply_tls_settings(config)

    # -- configuration ------------------------------------------------------------------------

    def _new_store(self, config: HttpsListenerConfig) -> CertificateStore:
        served = msgspec.structs.replace(
            config, alpn_protocols=served_alpn(config), disable_http11=False
        )
        store = CertificateStore(served)
        context = store.default_context
        context.sslsocket_class = TlsSocket
        context.sni_callback = self._on_server_name(store)
        return store

    def _apply_tls_settings(self, config: HttpsListenerConfig) -> None:
        self.tls_config = config
        self.strict_sni = config.strict_sni_binding is not False  # sozu's default: true
        self.listener_hsts = hsts_value(config.hsts)
        self.default_names = self._names_for(self.certificates.default, ())

    def update(self, patch: UpdateHttpsListenerConfig) -> None:
        changes: dict[str, Any] = {
            name: getattr(patch, name)
            for name in patch.__struct_fields__
            if name != "address" and getattr(patch, name) is not None
        }
        if not patch.answers:
            changes.pop("answers", None)
        if patch.alpn_protocols is not None:
            changes["alpn_protocols"] = list(patch.alpn_protocols.values)
        config = msgspec.structs.replace(self.tls_config, **changes)
        if {"alpn_protocols", "disable_http11"} & changes.keys():
            store = self._new_store(config)  # new contexts; live connections keep theirs
            for certificate, expired_at in self._certificates.values():
                store.add(certificate, expired_at)
            self.certificates = store
        self.configure(config)
        self.set_answers(config)
        self._apply_tls_settings(config)
        if "hsts" in changes:
            for key, front in list(self._fronts.items()):
                self.router.remove_frontend(front)
                self._add_route(key, front)

    # -- routes (HSTS rides on each route as a response header) ------------------------------

    def add_frontend(self, front: RequestHttpFrontend) -> None:
        self._add_route(frontend_key(front), front)

    def _add_route(self, key: str, front: RequestHttpFrontend) -> None:
        self._fronts[key] = front
        value = hsts_value(front.hsts) if front.hsts is not None else self.listener_hsts
        if value is not None:
            header = Header(
                position=HeaderPosition.RESPONSE, key="Strict-Transport-Security", val=value
            )
            front = msgspec.structs.replace(front, headers=[*front.headers, header])
        super().add_frontend(front)

    def remove_frontend(self, front: RequestHttpFrontend) -> None:
        self._fronts.pop(frontend_key(front), None)
        super().remove_frontend(front)

    # -- certificates -------------------------------------------------------------------------

    def add_certificate(self, certificate: CertificateAndKey, expired_at: int | None) -> str:
        _check_expiry(certificate, expired_at)
        fingerprint = self.certificates.add(certificate, expired_at)
        self._certificates[fingerprint] = (certificate, expired_at)
        return fingerprint

    def remove_certificate(self, fingerprint: str) -> None:
        self.certificates.remove(fingerprint)
        self._certificates.pop(fingerprint.lower(), None)
        self._binding_names.pop(fingerprint.lower(), None)

    def replace_certificate(
        self, old: str, certificate: CertificateAndKey, expired_at: int | None
    ) -> None:
        fingerprint = self.add_certificate(certificate, expired_at)  # new in, then old out
        if fingerprint != old.lower():
            self.remove_certificate(old)

    # -- connections --------------------------------------------------------------------------

    def connection_context(self, peer: tuple[str, int]) -> ConnectionContext:
        config = self.config
        return ConnectionContext(
            peer,
            self._public,
            "https",
            self.request_id_header,
            config.send_x_real_ip,
            config.elide_x_real_ip,
        )

    def _on_server_name(self, store: CertificateStore) -> Callable[..., None]:
        def on_server_name(connection: Any, server_name: str | None, _: object) -> None:
            # Inside the handshake: pick the certificate, remember it, never raise.
            stored = store.lookup(server_name)
            try:
                context = stored.context
            except TlsError:
                store.load_failures += 1
                stored = store.default
                context = stored.context
            if connection.context is not context:
                connection.context = context
            connection.served = stored
            if server_name:
                connection.server_name = server_name.lower().removesuffix(".")

        return on_server_name

    def open_session(self, loop: Loop, tls: TlsSocket, peer: tuple[str, int]) -> HttpsSession:
        binding = None
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
        return HttpsSession(loop, self, TlsStream(tls), peer, binding)

    def _override_names(self, fingerprint: str) -> tuple[str, ...]:
        known = self._certificates.get(fingerprint)
        return tuple(known[0].names) if known is not None else ()

    @staticmethod
    def _names_for(stored: StoredCertificate, override: tuple[str, ...]) -> tuple[str, ...]:
        """The names strict SNI binding accepts: the override, else the SAN, else the CN."""
        if override:
            return tuple(name.lower() for name in override)
        leaf = stored.certificate.leaf
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = san.value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        return tuple(n.lower() for n in names) if names else stored.names


def _check_expiry(certificate: CertificateAndKey, expired_at: int | None) -> None:
    """An expired certificate is refused, unless `expired_at` says it is still valid."""
    parsed = parse_certificate(certificate, expired_at)
    if parsed.expiration < time.time():
        raise TlsError(
            f"certificate {parsed.fingerprint} expired on "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(parsed.expiration))}"
        )


def tls_acceptor(loop: Loop, listener: HttpsListener) -> Callable[[int], None]:
    """The accept handler of an HTTPS listener: each connection starts its handshake."""

    def on_accept(mask: int) -> None:
        sessions = loop.sessions
        figures = loop.metrics.listener(str(listener.config.address))
        for sock, peer in listener.accept_batch(loop.max_connections - len(sessions)):
            loop.counters.accepted += 1
            figures.opened()
            try:
                handshake = TlsHandshake(loop, listener, sock, peer)
            except (ssl.SSLError, OSError):
                sock.close()
                figures.closed()
                continue
            handshake.figures = figures
            sessions.add(handshake)  # type: ignore[arg-type]
            handshake.on_event(EPOLLIN)  # the ClientHello may already be there
        if len(sessions) >= loop.max_connections:
            loop._pause_accept()  # the rest waits in the kernel's backlog

    return on_accept


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
