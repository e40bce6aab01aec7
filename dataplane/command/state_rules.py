"""Value checks for routing-state requests, and the certificate facts the state needs.

`ConfigState.dispatch` runs these before touching anything, so a request that would be silently
misread later (an empty id, a hostname with a space, a regex that does not compile, port 0, a
key that does not match its certificate) fails with a message saying what and why.
`cryptography` (11-16 MB of memory) is imported by the certificate functions, when one runs.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import TYPE_CHECKING, Any

from dataplane.command.address import SocketAddress, parse_network
from dataplane.command.auth_request_rules import auth_request_problem
from dataplane.command.canary_rules import canary_problem
from dataplane.command.client_auth_rules import client_auth_problem
from dataplane.command.cors_rules import cors_problem
from dataplane.command.credential_formats import CredentialError, split_entry
from dataplane.command.custom_errors_rules import custom_errors_problem
from dataplane.command.hash_keys import parse_hash_key
from dataplane.command.messages import (
    CertificateAndKey,
    Cluster,
    HealthCheckConfig,
    HttpListenerConfig,
    HttpsListenerConfig,
    LoadBalancingAlgorithms,
    PathRuleKind,
    RequestHttpFrontend,
    StickyCookie,
    TcpListenerConfig,
    UdpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateHttpsListenerConfig,
)
from dataplane.command.passthrough_rules import passthrough_problem
from dataplane.command.regexes import RegexError, compile_regex

if TYPE_CHECKING:
    from cryptography import x509


class StateError(Exception):
    """A routing-state request that cannot be applied; the message says what and why."""


MAX_ID_LENGTH = 256
MAX_TIMEOUT_SECONDS = 2**32 - 1  # as the listeners' timeouts (u32 in sozu)
ALPN_VALUES = ("h2", "http/1.1")
# RFC 9110 token characters: header names, methods, cookie names.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Characters that never belong in an id, a hostname or a path: whitespace and C0/DEL.
_BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_HOSTNAME_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f/?#@\\]")


def check_id(kind: str, value: str) -> None:
    if not value:
        raise StateError(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise StateError(f"{kind} {value[:40]!r}... is longer than {MAX_ID_LENGTH} characters")
    if _BLANK_OR_CONTROL.search(value):
        raise StateError(f"{kind} {value!r} must not contain spaces or control characters")


def check_port(what: str, address: SocketAddress) -> None:
    if address.port == 0:
        raise StateError(f"{what} {address}: port 0 is not a usable port")


def check_hostname(hostname: str) -> None:
    if not hostname:
        raise StateError("hostname must not be empty")
    if _HOSTNAME_FORBIDDEN.search(hostname):
        raise StateError(
            f"hostname {hostname!r} must not contain spaces, control characters or / ? # @ \\"
        )


def check_token(what: str, value: str) -> None:
    if not _TOKEN.fullmatch(value):  # fullmatch: `$` would let a trailing newline through
        raise StateError(f"{what} {value!r} is not a valid HTTP token")


def check_cookie_name(what: str, value: str) -> None:
    """A cookie name (RFC 6265: a token), of a sane length."""
    if len(value) > MAX_ID_LENGTH:
        raise StateError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    check_token(what, value)


def check_non_negative(owner: str, message: Any) -> None:
    """Every integer field of a message is a count, a size or a duration: never negative."""
    for name in message.__struct_fields__:
        value = getattr(message, name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise StateError(f"{owner}: {name} must not be negative (got {value})")


def check_http_frontend(front: RequestHttpFrontend) -> None:
    if front.cluster_id is not None:
        check_id("cluster_id", front.cluster_id)
    check_port("frontend address", front.address)
    check_hostname(front.hostname)
    value = front.path.value
    if front.path.kind == PathRuleKind.REGEX:
        try:
            compile_regex(value)
        except RegexError as error:
            raise StateError(f"path regex {value!r} does not compile: {error}") from None
    elif _BLANK_OR_CONTROL.search(value) or (value and not value.startswith("/")):
        raise StateError(f"path {value!r} must start with / and contain no spaces")
    if front.method is not None:
        check_token("method", front.method)
    for header in front.headers:
        check_token("header name", header.key)
        if "\r" in header.val or "\n" in header.val:
            raise StateError(f"header {header.key} value must not contain CR or LF")
    if front.rewrite_port is not None and not 0 < front.rewrite_port < 65536:
        raise StateError(f"rewrite_port {front.rewrite_port} is not in 1..65535")
    check_non_negative(f"frontend {front.hostname}", front)
    check_access(f"frontend {front.hostname}", front)
    if front.canary is not None:
        problem = canary_problem(front.canary)
        if problem is None and front.cluster_id is None:
            problem = "a deny route (no cluster_id) has no canary"
        if problem is not None:
            raise StateError(f"frontend {front.hostname}: canary: {problem}")
    if front.passthrough and (problem := passthrough_problem(front)) is not None:
        raise StateError(f"frontend {front.hostname}: passthrough: {problem}")
    problem = cors_problem(front.cors) if front.cors is not None else None
    if problem is not None:
        raise StateError(f"frontend {front.hostname}: {problem}")
    if front.client_auth is not None:
        problem = client_auth_problem(front.client_auth, front.hostname)
        if problem is None and front.passthrough:
            problem = "a passthrough frontend does not terminate TLS: no client_auth"
        if problem is not None:
            raise StateError(f"frontend {front.hostname}: {problem}")
    if front.custom_errors is not None:
        problem = custom_errors_problem(front.custom_errors)
        if problem is None and front.cluster_id is None:
            problem = "a deny route (no cluster_id) has no custom_errors"
        if problem is not None:
            raise StateError(f"frontend {front.hostname}: custom_errors: {problem}")
    if front.auth_request is not None:
        problem = auth_request_problem(front.auth_request)
        if problem is None and front.cluster_id is None:
            problem = "a deny route (no cluster_id) has no auth_request"
        if problem is not None:
            raise StateError(f"frontend {front.hostname}: auth_request: {problem}")


RATE_LIMIT_STATUSES = (429, 503)  # the statuses with a rate-limit answer


def check_access(where: str, front: RequestHttpFrontend) -> None:
    """The pysozu access fields of a frontend (source lists, rate limits, body size)."""
    for field, networks in (
        ("allowed_sources", front.allowed_sources),
        ("denied_sources", front.denied_sources),
        *(
            (f"rate_limits[{n}].exempt_sources", r.exempt_sources)
            for n, r in enumerate(front.rate_limits)
        ),
        *(
            ("connection_limit.exempt_sources", c.exempt_sources)
            for c in (front.connection_limit,)
            if c is not None
        ),
    ):
        for text in networks:
            try:
                parse_network(text)
            except ValueError as error:
                raise StateError(f"{where}: {field}: {error}") from None
    for n, limit in enumerate(front.rate_limits):
        if not limit.rate > 0 or limit.rate != limit.rate or limit.rate == float("inf"):
            raise StateError(f"{where}: rate_limits[{n}].rate must be a positive number")
        if limit.burst < 0:
            raise StateError(f"{where}: rate_limits[{n}].burst must not be negative")
        if limit.status not in RATE_LIMIT_STATUSES:
            raise StateError(f"{where}: rate_limits[{n}].status must be 429 or 503")
    conns = front.connection_limit
    if conns is not None and not 0 < conns.max_concurrent_per_client < 2**31:
        raise StateError(f"{where}: connection_limit.max_concurrent_per_client must be positive")
    if conns is not None and conns.status not in RATE_LIMIT_STATUSES:
        raise StateError(f"{where}: connection_limit.status must be 429 or 503")
    if front.max_body_size is not None and front.max_body_size < 0:
        raise StateError(f"{where}: max_body_size must not be negative (0: no limit)")


def check_health_check(cluster_id: str, config: HealthCheckConfig) -> None:
    where = f"health check of cluster {cluster_id}"
    if not config.uri.startswith("/"):
        raise StateError(f"{where}: uri {config.uri!r} must start with /")
    if _BLANK_OR_CONTROL.search(config.uri):
        raise StateError(f"{where}: uri must not contain spaces or control characters")
    for name in ("interval", "timeout", "healthy_threshold", "unhealthy_threshold"):
        if getattr(config, name) <= 0:
            raise StateError(f"{where}: {name} must be at least 1")
    check_non_negative(where, config)


def check_cluster(cluster: Cluster) -> None:
    check_id("cluster_id", cluster.cluster_id)
    check_non_negative(f"cluster {cluster.cluster_id}", cluster)
    if cluster.health_check is not None:
        check_health_check(cluster.cluster_id, cluster.health_check)
    if cluster.https_redirect_port is not None and not 0 < cluster.https_redirect_port < 65536:
        raise StateError(
            f"cluster {cluster.cluster_id}: https_redirect_port "
            f"{cluster.https_redirect_port} is not in 1..65535"
        )
    for name in ("connect_timeout", "back_timeout"):
        seconds = getattr(cluster, name)
        if seconds is not None and not 0 < seconds <= MAX_TIMEOUT_SECONDS:
            raise StateError(
                f"cluster {cluster.cluster_id}: {name} {seconds} is not in 1..{MAX_TIMEOUT_SECONDS}"
            )
    if cluster.sticky_name is not None:
        check_cookie_name(f"cluster {cluster.cluster_id}: sticky_name", cluster.sticky_name)
    for entry in cluster.authorized_hashes:
        try:
            split_entry(entry)
        except CredentialError as error:
            raise StateError(f"cluster {cluster.cluster_id}: authorized_hashes: {error}") from None
    if cluster.hash_key is not None:
        try:
            parse_hash_key(cluster.hash_key)
        except ValueError as error:
            raise StateError(f"cluster {cluster.cluster_id}: hash_key: {error}") from None
        if cluster.load_balancing not in (
            LoadBalancingAlgorithms.HRW,
            LoadBalancingAlgorithms.MAGLEV,
        ):
            raise StateError(
                f"cluster {cluster.cluster_id}: hash_key needs load_balancing HRW or MAGLEV"
            )
    if cluster.sticky_cookie is not None:
        check_sticky_cookie(f"cluster {cluster.cluster_id}: sticky_cookie", cluster.sticky_cookie)


STICKY_SAME_SITE = ("Strict", "Lax", "None")
STICKY_SECURE = ("never", "always", "https")
# A cookie attribute value (RFC 6265 av-octet): printable ASCII but ';'.
_ATTRIBUTE_VALUE = re.compile(r"^[ -:<-~]{1,256}$")
_MAX_COOKIE_SECONDS = 10 * 365 * 24 * 3600


def check_sticky_cookie(where: str, cookie: StickyCookie) -> None:
    """The attributes end up verbatim in a Set-Cookie header: no ';', CR, LF or NUL."""
    if not cookie.path.startswith("/") or not _ATTRIBUTE_VALUE.match(cookie.path):
        raise StateError(f"{where}: path {cookie.path!r} must start with / (printable, no ';')")
    if cookie.domain is not None and not _ATTRIBUTE_VALUE.match(cookie.domain):
        raise StateError(f"{where}: domain {cookie.domain!r} is not printable without ';'")
    for name in ("max_age", "expires"):
        seconds = getattr(cookie, name)
        if seconds is not None and not 0 <= seconds <= _MAX_COOKIE_SECONDS:
            raise StateError(f"{where}: {name} {seconds} is not in 0..{_MAX_COOKIE_SECONDS}")
    if cookie.same_site is not None and cookie.same_site not in STICKY_SAME_SITE:
        raise StateError(
            f"{where}: same_site {cookie.same_site!r} is not one of {STICKY_SAME_SITE}"
        )
    if cookie.secure not in STICKY_SECURE:
        raise StateError(f"{where}: secure {cookie.secure!r} is not one of {STICKY_SECURE}")


AnyListener = HttpListenerConfig | HttpsListenerConfig | TcpListenerConfig | UdpListenerConfig


def check_listener(kind: str, listener: AnyListener) -> None:
    where = f"{kind} listener {listener.address}"
    check_port(f"{kind} listener", listener.address)
    check_non_negative(where, listener)
    if isinstance(listener, HttpListenerConfig):
        check_h2_knobs(where, listener)
        check_token(f"{where}: sticky_name", listener.sticky_name)
        if listener.sozu_id_header is not None:
            check_token(f"{where}: sozu_id_header", listener.sozu_id_header)
        check_trusted_proxies(where, listener.trusted_proxies)
    if isinstance(listener, HttpsListenerConfig):
        check_alpn(where, listener.alpn_protocols)
        check_http11_offered(where, listener)
        check_no_h2c(where, listener)
        if listener.certificate is not None or listener.key is not None:
            if listener.certificate is None or listener.key is None:
                raise StateError(f"{where}: a default certificate needs both certificate and key")
            check_certificate(
                CertificateAndKey(
                    certificate=listener.certificate,
                    key=listener.key,
                    certificate_chain=listener.certificate_chain,
                )
            )


def check_trusted_proxies(where: str, networks: list[str]) -> None:
    """Every `trusted_proxies` entry is an IP network (address.parse_network says why not)."""
    for text in networks:
        try:
            parse_network(text)
        except ValueError as error:
            raise StateError(f"{where}: trusted_proxies: {error}") from None


def check_h2_knobs(
    where: str,
    config: HttpListenerConfig | UpdateHttpListenerConfig | UpdateHttpsListenerConfig,
) -> None:
    for name in config.__struct_fields__:
        value = getattr(config, name)
        zero_allowed = name == "h2_graceful_shutdown_deadline_seconds"  # 0 = wait for streams
        if name.startswith("h2_") and value is not None and value < (0 if zero_allowed else 1):
            raise StateError(f"{where}: {name} must be at least {0 if zero_allowed else 1}")


def check_http11_offered(where: str, listener: HttpsListenerConfig) -> None:
    """An HTTPS listener offers at least one protocol by ALPN (h2 or http/1.1)."""
    alpn = listener.alpn_protocols or ["h2", "http/1.1"]
    offered = [name for name in alpn if name != "http/1.1" or not listener.disable_http11]
    if not offered:
        raise StateError(f"{where}: disable_http11 leaves no ALPN protocol to offer")


def check_no_h2c(where: str, listener: HttpsListenerConfig) -> None:
    """h2c is clear-text HTTP/2: an HTTPS listener negotiates h2 by ALPN instead."""
    if listener.h2c:
        raise StateError(f"{where}: h2c is for HTTP listeners; HTTPS offers h2 by ALPN")


def check_alpn(where: str, values: list[str]) -> None:
    for value in values:
        if value not in ALPN_VALUES:
            raise StateError(f"{where}: ALPN protocol {value!r} is not one of h2, http/1.1")


# ---------------------------------------------------------------------------------------------
# Certificates


def _leaf(pem: str) -> x509.Certificate:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as error:
        raise StateError(f"certificate is not a parsable PEM certificate ({error})") from None


def certificate_fingerprint(pem: str) -> str:
    """Hex SHA-256 of the leaf certificate's DER, as sozu prints fingerprints."""
    from cryptography.hazmat.primitives import hashes

    return _leaf(pem).fingerprint(hashes.SHA256()).hex()


def _names_of(certificate: x509.Certificate) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            str(attribute.value)
            for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return names


def certificate_names(pem: str) -> list[str]:
    """The DNS names a certificate serves: its SAN dNSNames, or its CN when it has no SAN."""
    return _names_of(_leaf(pem))


def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    result: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return result


def check_certificate(certificate: CertificateAndKey) -> str:
    """Validate a certificate, its chain and its key; return the leaf's fingerprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    leaf = _leaf(certificate.certificate)
    for index, pem in enumerate(certificate.certificate_chain):
        try:
            x509.load_pem_x509_certificates(pem.encode())
        except ValueError as error:
            raise StateError(f"certificate_chain[{index}] is not parsable PEM ({error})") from None
    try:
        key = serialization.load_pem_private_key(certificate.key.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise StateError(f"key is not a parsable unencrypted PEM private key ({error})") from None
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise StateError("key does not match the certificate's public key")
    for name in certificate.names:
        check_hostname(name)
    return leaf.fingerprint(hashes.SHA256()).hex()


def check_certificate_servable(certificate: CertificateAndKey) -> None:
    """What a worker would refuse to serve: a chain out of order (each certificate must be
    issued by the next). An expired certificate is served, as sozu does (`expiry_warning`)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    leaf = _leaf(certificate.certificate)
    chain = [
        extra
        for pem in certificate.certificate_chain
        for extra in x509.load_pem_x509_certificates(pem.encode())
        if extra != leaf  # a fullchain.pem repeats the leaf
    ]
    for index, (child, issuer) in enumerate(itertools.pairwise([leaf, *chain])):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise StateError(
                f"chain out of order: certificate {index} ({child.subject.rfc4514_string()}) "
                f"is not issued by certificate {index + 1} ({issuer.subject.rfc4514_string()})"
            ) from None


def expiry_warning(certificate: CertificateAndKey, expired_at: int | None) -> str | None:
    """What to tell the operator about an expired certificate (None: not expired). sozu loads
    expired certificates; so does pysozu, saying so, and counting them (`tls.cert.expired`)."""
    leaf = _leaf(certificate.certificate)
    expiration = expired_at if expired_at is not None else leaf.not_valid_after_utc.timestamp()
    if expiration >= time.time():
        return None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expiration))
    names = ", ".join(certificate.names or certificate_names(certificate.certificate))
    return f"certificate for {names} expired on {when}: loaded and served anyway, as sozu does"


def with_names(certificate: CertificateAndKey) -> CertificateAndKey:
    """The certificate with `names` filled from the certificate when the request left it empty."""
    if certificate.names:
        return certificate
    names = certificate_names(certificate.certificate)
    return CertificateAndKey(
        certificate=certificate.certificate,
        certificate_chain=list(certificate.certificate_chain),
        key=certificate.key,
        versions=list(certificate.versions),
        names=names,
    )


def check_fingerprint(fingerprint: str) -> str:
    normalized = fingerprint.strip().lower()
    if len(normalized) != 64 or any(c not in "0123456789abcdef" for c in normalized):
        raise StateError(f"fingerprint {fingerprint!r} is not a hex SHA-256 (64 hex digits)")
    return normalized
