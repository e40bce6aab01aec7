"""`backend-protocol: HTTPS | GRPCS` and the `proxy-ssl-*` annotations -> the cluster's
`backend_tls` (docs/backend-tls.md), with ingress-nginx's semantics and defaults:

- `HTTPS`: TLS to the backends, HTTP/1.1 (ALPN `http/1.1`); `GRPCS`: TLS with ALPN `h2` (the
  cluster's `http2`). `GRPC` and `H2C` stay h2c, `HTTP` / `AUTO_HTTP` plain HTTP/1.1.
- `proxy-ssl-verify` (`on` | `off`, default off): verify the backend's certificate against the
  `ca.crt` of `proxy-ssl-secret`, within `proxy-ssl-verify-depth` (default 1) intermediates,
  for the name `proxy-ssl-name`.
- `proxy-ssl-name`: the name verified, and sent as SNI when `proxy-ssl-server-name` is `on`
  (default off: no SNI). Unset, it is the upstream's host: pysozu names the Service
  `<service>.<namespace>.svc` (nginx's `$proxy_host` is an upstream name of ingress-nginx's).
- `proxy-ssl-secret` (`namespace/name`, as ingress-nginx; a bare name is the Ingress's
  namespace): `ca.crt`, and optionally `tls.crt`/`tls.key`, a client certificate shown to
  backends that ask for one.

Security fails closed: a secret that is missing, from another namespace, or unusable, a
`proxy-ssl-verify` that is neither on nor off, or verification without a `ca.crt`, and the
Ingress's routes answer 503 (`AnnotationNotEnforced`). `proxy-ssl-*` without HTTPS or GRPCS
change nothing (as in nginx): reported.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ingress_operator.annotation_review import NOT_ENFORCED, Notice, Refusals
from ingress_operator.model import BackendRef, Ingress, ObjectKey, TlsSecret

from dataplane.command.messages import BackendTls

Lookup = Callable[[str], "tuple[str, str] | None"]


class _Options(Protocol):  # annotations.Options (which imports this module)
    backend_tls: BackendTlsAsk | None
    refused: list[str]
    notices: list[Notice]


TLS_NAMES = frozenset(
    {
        "backend-protocol",
        "proxy-ssl-secret",
        "proxy-ssl-verify",
        "proxy-ssl-name",
        "proxy-ssl-server-name",
        "proxy-ssl-verify-depth",
    }
)
_H2C = frozenset({"GRPC", "H2C"})
_PLAIN = frozenset({"HTTP", "AUTO_HTTP"})
_TLS = {"HTTPS": False, "GRPCS": True}  # protocol -> h2
_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$"
)
_SECRET = re.compile(r"^(?:([a-z0-9][a-z0-9-]{0,62})/)?([a-z0-9][a-z0-9.-]{0,252})$")
DEFAULT_DEPTH = 1  # nginx's proxy_ssl_verify_depth
MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class BackendTlsAsk:
    """What the annotations ask of TLS to the backends (resolved against Secrets later)."""

    verify: bool = False
    name: str | None = None  # None: the upstream's host
    server_name: bool = False  # send `name` as SNI
    depth: int = DEFAULT_DEPTH
    secret: tuple[str | None, str] | None = None  # (namespace as written, name)
    secret_key: str = ""  # the annotation that names it, for messages


@dataclass(slots=True)
class Parsed(Refusals):
    http2: bool = False
    tls: BackendTlsAsk | None = None


def _on_off(key: str, value: str) -> bool | None:
    text = value.strip().lower()
    return True if text == "on" else False if text == "off" else None


def parse_backend_tls(find: Lookup) -> Parsed:
    """`find(name)`: (key, value) of `pysozu.io/<name>`, else (with --nginx-annotations) of
    `nginx.ingress.kubernetes.io/<name>`."""
    out = Parsed()
    found = {name: kv for name in TLS_NAMES if (kv := find(name)) is not None}
    tls = False
    if (entry := found.pop("backend-protocol", None)) is not None:
        key, value = entry
        protocol = value.strip().upper()
        if protocol in _TLS:
            tls, out.http2 = True, _TLS[protocol]
        elif protocol in _H2C:
            out.http2 = True
        elif protocol not in _PLAIN:
            out.problems.append(
                f"annotation {key}: {value!r} is not served by pysozu (HTTP, HTTPS, GRPC, "
                "GRPCS and H2C are); the backends get plain HTTP/1.1"
            )
    if not tls:
        for key, _ in sorted(found.values()):
            out.problems.append(
                f"annotation {key}: has no effect without backend-protocol HTTPS or GRPCS"
            )
        return out
    verify = server_name = False
    if (entry := found.get("proxy-ssl-verify")) is not None:
        on = _on_off(*entry)
        if on is None:
            out.refuse(entry[0], f"{entry[1]!r} is neither on nor off")
        verify = bool(on)
    if (entry := found.get("proxy-ssl-server-name")) is not None:
        on = _on_off(*entry)
        if on is None:
            out.problems.append(f"annotation {entry[0]}: {entry[1]!r} is neither on nor off")
        server_name = bool(on)
    name = None
    if (entry := found.get("proxy-ssl-name")) is not None:
        if _HOST.match(entry[1].strip()):
            name = entry[1].strip().lower()
        elif verify:
            out.refuse(entry[0], f"{entry[1]!r} is not a host name to verify")
        else:
            out.problems.append(f"annotation {entry[0]}: {entry[1]!r} is not a host name")
    depth = DEFAULT_DEPTH
    if (entry := found.get("proxy-ssl-verify-depth")) is not None:
        text = entry[1].strip()
        if text.isdigit() and int(text) <= MAX_DEPTH:
            depth = int(text)
        elif verify:
            out.refuse(entry[0], f"{entry[1]!r} is not a depth in 0..{MAX_DEPTH}")
        else:
            out.problems.append(f"annotation {entry[0]}: {entry[1]!r} is not a depth")
    secret, secret_key = None, ""
    if (entry := found.get("proxy-ssl-secret")) is not None:
        secret_key = entry[0]
        match = _SECRET.match(entry[1].strip())
        if match is None:
            out.refuse(secret_key, f"{entry[1]!r} is not namespace/name of a Secret")
        else:
            secret = (match.group(1), match.group(2))
    elif verify:
        out.refuse(found["proxy-ssl-verify"][0], "verification needs proxy-ssl-secret (ca.crt)")
    out.tls = BackendTlsAsk(verify, name, server_name, depth, secret, secret_key)
    return out


def secret_refusal(
    ask: BackendTlsAsk, secrets: Mapping[ObjectKey, TlsSecret], namespace: str
) -> Notice | None:
    """A Warning when the Secret of an Ingress in `namespace` cannot be used: its routes
    must answer 503 (the caller refuses `ask.secret_key`)."""
    if ask.secret is None:
        return None
    written, name = ask.secret
    key = ObjectKey(namespace, name)
    if (written or namespace) != namespace:
        why = "a Secret of another namespace is not read"
    elif (secret := secrets.get(key)) is None:
        why = f"Secret {key} not found"
    elif secret.problem and not secret.ca_only:
        why = secret.problem
    elif ask.verify and not secret.ca:
        why = f"Secret {key} has no ca.crt to verify with"
    else:
        return None
    message = f"annotation {ask.secret_key}: {why}, so the Ingress's routes answer 503"
    return Notice("Warning", NOT_ENFORCED, message)


def backend_tls(
    ask: BackendTlsAsk,
    secrets: Mapping[ObjectKey, TlsSecret],
    namespace: str,
    upstream_host: str,
) -> BackendTls:
    """The cluster's `backend_tls` (once `secret_refusal` found the Secret usable)."""
    name = ask.name or upstream_host
    secret = secrets.get(ObjectKey(namespace, ask.secret[1])) if ask.secret else None
    client = secret is not None and not secret.ca_only and not secret.problem
    return BackendTls(
        server_name=name if ask.server_name else None,
        verify=ask.verify,
        verify_name=name if ask.verify else None,
        verify_depth=ask.depth if ask.verify else None,
        ca=secret.ca if ask.verify and secret is not None else None,
        certificate="".join((secret.certificate, *secret.chain)) if client and secret else None,
        key=secret.private_key if client and secret else None,
    )


def refuse_unusable_secret(
    options: _Options, secrets: Mapping[ObjectKey, TlsSecret], namespace: str
) -> None:
    """Render time (the Secrets known): an unusable proxy-ssl-secret refuses the Ingress."""
    ask = options.backend_tls
    if ask is not None and (notice := secret_refusal(ask, secrets, namespace)) is not None:
        options.refused.append(ask.secret_key)
        options.notices.append(notice)


def cluster_backend_tls(
    options: _Options, secrets: Mapping[ObjectKey, TlsSecret], owner: Ingress, ref: BackendRef
) -> BackendTls | None:
    """The `backend_tls` of the cluster of `ref` (a Service of `owner`'s namespace)."""
    ask = options.backend_tls
    if ask is None:
        return None
    namespace = owner.key.namespace
    if secret_refusal(ask, secrets, namespace) is not None:
        # A canary Ingress (main's options, its own namespace) whose Secret is not usable
        # there: verification that nothing passes, so its backends answer 503 (fail closed).
        return BackendTls(verify=True, ca=_nobodys_ca(), verify_name="invalid")
    upstream = f"{ref.service}.{namespace}.svc"
    return backend_tls(ask, secrets, namespace, upstream)


@functools.cache
def _nobodys_ca() -> str:
    """A CA certificate whose key is thrown away: it signs nothing, ever."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pysozu: trusts nothing")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
