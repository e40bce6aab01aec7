"""A frontend's client-certificate policy and the request-time decision (ingress-nginx's
`auth-tls-*`; pysozu extension, docs/client-certificates.md).

The handshake (tls/client_auth.py) asks for and verifies the certificate; what it learnt is a
`ClientConnection`, made once per connection, which also stands as the session's SNI check.
Each request on a route with a policy is then decided by `ClientAuthPolicy.check`:

- a policy that cannot be served (`optional_no_ca`): 503 with the reason, never unverified;
- a connection not made for this policy (another SNI, HTTP/2 coalescing, no TLS policy at
  all, a policy changed since): 421, the client reconnects with the host as SNI;
- a failed verification the handshake let through (the chain deeper than `verify_depth`):
  400 "The SSL certificate error" (nginx's 495), or a 302 to `error_page`;
- no certificate with `verify = on`: 400 "No required SSL certificate was sent" (nginx's
  496), or a 302 to `error_page`;
- `match_cn` not found in the subject DN: 403 "client certificate unauthorized";
- else the request goes on with `ssl-client-verify`, `ssl-client-subject-dn`,
  `ssl-client-issuer-dn` (and `ssl-client-cert`, URL-encoded PEM, with `pass_certificate`)
  replacing whatever the client sent under those names.

Routes without a policy pay one attribute test (`Route.client_auth`).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import msgspec

from dataplane.command.messages import ClientAuth
from dataplane.command.regexes import Regex, compile_regex

HeaderEdits = tuple[tuple[str, str], ...]
NOT_SERVED = (
    "client_auth verify optional_no_ca is not served: Python's ssl cannot accept a client "
    "certificate without verifying it"
)
NOT_THIS_CONNECTION = "{host} asks for a client certificate: connect with {host} as TLS SNI"
NO_CERTIFICATE = "No required SSL certificate was sent"
CERTIFICATE_ERROR = "The SSL certificate error"
UNAUTHORIZED = "client certificate unauthorized"
HEADER_NAMES = ("ssl-client-verify", "ssl-client-subject-dn", "ssl-client-issuer-dn")
CERT_HEADER = "ssl-client-cert"


class SniCheck(Protocol):
    def allows(self, host: str) -> bool: ...


class ClientRefusal(NamedTuple):
    status: int
    message: str
    location: str | None = None  # a 302's target (error_page)


class ClientAuthPolicy:
    """One frontend's `client_auth`, validated and precomputed."""

    __slots__ = ("config", "error_page", "key", "match", "pass_certificate", "problem", "verify")

    def __init__(self, config: ClientAuth) -> None:
        self.config = config
        self.key = msgspec.json.encode(config)  # two frontends agree when their keys do
        self.verify = config.verify
        self.error_page = config.error_page
        self.pass_certificate = config.pass_certificate
        self.match: Regex | None = (
            compile_regex(config.match_cn) if config.match_cn is not None else None
        )
        self.problem = NOT_SERVED if config.verify == "optional_no_ca" else None

    @classmethod
    def build(cls, config: ClientAuth | None) -> ClientAuthPolicy | None:
        return None if config is None else cls(config)

    def check(self, connection: object, host: str) -> ClientRefusal | HeaderEdits:
        """The decision for one request to `host` on a connection (its `sni_binding`)."""
        if self.problem is not None:
            return ClientRefusal(503, self.problem)
        if type(connection) is not ClientConnection or connection.key != self.key:
            return ClientRefusal(421, NOT_THIS_CONNECTION.format(host=host))
        if connection.failure is not None:
            return self._refused(CERTIFICATE_ERROR)
        if connection.subject is None and self.verify == "on":
            return self._refused(NO_CERTIFICATE)
        match = self.match
        if match is not None and match.search(connection.subject or "") is None:
            return ClientRefusal(403, UNAUTHORIZED)
        return connection.with_cert if self.pass_certificate else connection.headers

    def _refused(self, message: str) -> ClientRefusal:
        if self.error_page is not None:
            return ClientRefusal(302, message, self.error_page)
        return ClientRefusal(400, message)


class ClientConnection:
    """What one TLS connection learnt of its client certificate, and its SNI check.

    `subject`/`issuer`: RFC 4514 DNs (None: no certificate); `failure`: why a certificate
    the handshake accepted still fails (None: it does not); `pem`: the leaf, PEM."""

    __slots__ = ("binding", "failure", "headers", "issuer", "key", "subject", "with_cert")

    def __init__(
        self,
        binding: SniCheck | None,
        key: bytes,
        subject: str | None,
        issuer: str | None,
        pem: str | None,
        failure: str | None,
    ) -> None:
        self.binding = binding
        self.key = key
        self.subject = subject
        self.issuer = issuer
        self.failure = failure
        if failure is not None:
            verify = f"FAILED:{failure}"
        else:
            verify = "SUCCESS" if subject is not None else "NONE"
        values = (verify, header_safe(subject or ""), header_safe(issuer or ""))
        self.headers: HeaderEdits = (*zip(HEADER_NAMES, values, strict=True), (CERT_HEADER, ""))
        self.with_cert: HeaderEdits = (*self.headers[:3], (CERT_HEADER, escaped(pem or "")))

    def allows(self, host: str) -> bool:
        binding = self.binding
        return binding is None or binding.allows(host)


def header_safe(text: str) -> str:
    """A DN as a header value: controls and non-ASCII as RFC 4514 `\\XX` escapes."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in text:
        if " " <= char <= "~":
            out.append(char)
        else:
            out.extend(f"\\{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def escaped(pem: str) -> str:
    """nginx's `$ssl_client_escaped_cert`: the PEM, URL-encoded."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in pem.encode("ascii"))
