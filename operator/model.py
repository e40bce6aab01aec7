"""Compact, typed snapshots of the Kubernetes objects the controller reads.

The indices keep these instead of raw bodies: memory scales with what routing needs, not with
the objects' size. Parsing is total: a malformed field never raises, it becomes a `problems`
entry on the snapshot (reported later as an Event) and the field is left out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from dataplane.command.credential_formats import CredentialError, split_entry
from dataplane.command.state_rules import StateError, certificate_names

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Address = tuple[str, str]  # ("ip" | "hostname", value), as in status.loadBalancer.ingress


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """namespace/name of a namespaced object ("" namespace for cluster-scoped ones)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class BackendRef:
    """`backend.service`: a port by number or by name (exactly one is set)."""

    service: str
    port_number: int | None = None
    port_name: str | None = None

    @property
    def port_label(self) -> str:
        return str(self.port_number) if self.port_number is not None else str(self.port_name)


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str
    path_type: str
    backend: BackendRef | None


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str | None
    paths: tuple[IngressPath, ...]


@dataclass(frozen=True, slots=True)
class IngressTls:
    hosts: tuple[str, ...]
    secret_name: str | None


@dataclass(frozen=True, slots=True)
class Ingress:
    key: ObjectKey
    uid: str
    created: str  # RFC 3339 from the API server: sorts chronologically as text
    class_name: str | None
    annotations: Mapping[str, str]
    default_backend: BackendRef | None
    rules: tuple[IngressRule, ...]
    tls: tuple[IngressTls, ...]
    status_addresses: tuple[tuple[str, str], ...]  # (("ip"|"hostname"), value) as last written
    problems: tuple[str, ...] = ()
    status_error: str | None = None  # the first `ports[].error` in the status, as last written

    @property
    def age_key(self) -> tuple[str, str, str]:
        """Oldest first; namespace/name break ties so the order never depends on arrival."""
        return (self.created, self.key.namespace, self.key.name)

    @property
    def legacy_class(self) -> str | None:
        return self.annotations.get(LEGACY_CLASS_ANNOTATION)


@dataclass(frozen=True, slots=True)
class IngressClass:
    name: str
    controller: str
    is_default: bool


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str  # "" when unnamed, as EndpointSlice ports call it
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    key: ObjectKey
    type: str
    ports: tuple[ServicePort, ...]
    addresses: tuple[Address, ...] = ()  # for --publish-service (published_addresses)
    cluster_ip: str | None = None  # spec.clusterIP ("None" for a headless Service)


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    pod: str | None
    terminating: bool = False  # terminating but still serving: only for what is under way


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    key: ObjectKey
    service: str
    ports: tuple[ServicePort, ...]  # name -> container port
    ready: tuple[Endpoint, ...]  # endpoints that may receive traffic (see parse_endpoint_slice)


@dataclass(frozen=True, slots=True)
class TlsSecret:
    key: ObjectKey
    certificate: str  # leaf PEM
    chain: tuple[str, ...]  # intermediates PEM, in order
    private_key: str
    fingerprint: str  # hex SHA-256 of the leaf's DER, as the dataplane names certificates
    problem: str | None = None
    names: tuple[str, ...] = ()  # the leaf's SAN DNS names, else its CN
    not_after: float = 0.0  # the leaf's expiry, unix time (0: unknown, a broken Secret)
    ca: str = ""  # PEM of `ca.crt` (proxy-ssl-secret), "" when absent
    ca_only: bool = False  # a `ca.crt` without `tls.crt`/`tls.key` (no key pair: `problem`)
    crl: str = ""  # `ca.crl` as sent (auth-tls-secret; checked when used), "" when absent


@dataclass(frozen=True, slots=True)
class AuthSecret:
    """A Secret that can back basic auth (ingress-nginx's `auth-secret`): its `auth` key as an
    htpasswd file (`auth-file`), and its keys as users with hashes as values (`auth-map`).
    Entries are `user:hash` strings as the dataplane takes them; `problems` name the users
    whose line was left out (never a hash)."""

    key: ObjectKey
    file_entries: tuple[str, ...] | None  # None: no `auth` key
    map_entries: tuple[str, ...]
    file_problems: tuple[str, ...] = ()
    map_problems: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Parsing helpers: every accessor tolerates any JSON shape.


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _str_map(value: Any) -> dict[str, str]:
    return {k: v for k, v in _dict(value).items() if isinstance(k, str) and isinstance(v, str)}


def _key(body: Mapping[str, Any]) -> ObjectKey:
    meta = _dict(body.get("metadata"))
    return ObjectKey(_str(meta.get("namespace")) or "", _str(meta.get("name")) or "")


def _port(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return value if ok else None


def _lb_addresses(status: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for entry in _list(_dict(_dict(status).get("loadBalancer")).get("ingress")):
        entry = _dict(entry)
        for kind in ("ip", "hostname"):
            if value := _str(entry.get(kind)):
                out.append((kind, value))
                break
    return tuple(out)


def _lb_error(status: Any) -> str | None:
    for entry in _list(_dict(_dict(status).get("loadBalancer")).get("ingress")):
        for port in _list(_dict(entry).get("ports")):
            if error := _str(_dict(port).get("error")):
                return error
    return None


def _backend(value: Any, where: str, problems: list[str]) -> BackendRef | None:
    backend = _dict(value)
    service = _dict(backend.get("service"))
    if not service:
        kind = "a resource backend" if "resource" in backend else "no service"
        problems.append(f"{where}: {kind} is not supported, only service backends")
        return None
    name = _str(service.get("name"))
    port = _dict(service.get("port"))
    number, port_name = _port(port.get("number")), _str(port.get("name"))
    if not name or (number is None) == (port_name is None):
        problems.append(f"{where}: needs a service name and exactly one of port number or name")
        return None
    return BackendRef(service=name, port_number=number, port_name=port_name)


def parse_ingress(body: Mapping[str, Any]) -> Ingress:
    meta, spec = _dict(body.get("metadata")), _dict(body.get("spec"))
    problems: list[str] = []
    default = None
    if "defaultBackend" in spec:
        default = _backend(spec["defaultBackend"], "defaultBackend", problems)
    rules = []
    for i, rule in enumerate(_list(spec.get("rules"))):
        rule = _dict(rule)
        paths = []
        for j, entry in enumerate(_list(_dict(rule.get("http")).get("paths"))):
            entry = _dict(entry)
            where = f"rules[{i}].http.paths[{j}]"
            backend = _backend(entry.get("backend"), where, problems)
            path_type = _str(entry.get("pathType")) or ""
            paths.append(IngressPath(_str(entry.get("path")) or "", path_type, backend))
        rules.append(IngressRule(_str(rule.get("host")) or None, tuple(paths)))
    tls = []
    for entry in _list(spec.get("tls")):
        entry = _dict(entry)
        hosts = tuple(h for h in _list(entry.get("hosts")) if isinstance(h, str))
        tls.append(IngressTls(hosts, _str(entry.get("secretName"))))
    return Ingress(
        key=_key(body),
        uid=_str(meta.get("uid")) or "",
        created=_str(meta.get("creationTimestamp")) or "",
        class_name=_str(spec.get("ingressClassName")),
        annotations=_str_map(meta.get("annotations")),
        default_backend=default,
        rules=tuple(rules),
        tls=tuple(tls),
        status_addresses=_lb_addresses(body.get("status")),
        status_error=_lb_error(body.get("status")),
        problems=tuple(problems),
    )


def parse_ingress_class(body: Mapping[str, Any]) -> IngressClass:
    meta = _dict(body.get("metadata"))
    default = _str_map(meta.get("annotations")).get(DEFAULT_CLASS_ANNOTATION, "")
    return IngressClass(
        name=_str(meta.get("name")) or "",
        controller=_str(_dict(body.get("spec")).get("controller")) or "",
        is_default=default.lower() == "true",
    )


def _ports(value: Any, number_field: str) -> tuple[ServicePort, ...]:
    out = []
    for entry in _list(value):
        entry = _dict(entry)
        number = _port(entry.get(number_field))
        if number is not None and (_str(entry.get("protocol")) or "TCP") == "TCP":
            out.append(ServicePort(_str(entry.get("name")) or "", number))
    return tuple(out)


def published_addresses(kind: str, spec: Mapping[str, Any], status: Any) -> tuple[Address, ...]:
    """The addresses a --publish-service Service gives Ingress status: a LoadBalancer's
    load-balancer addresses and external IPs (a pending one: its external IPs only, never its
    cluster IP, which clients outside cannot reach); an ExternalName its name; another type its
    external IPs, else its cluster IP (none when headless)."""
    external = [("ip", ip) for ip in _list(spec.get("externalIPs")) if isinstance(ip, str) and ip]
    if kind == "LoadBalancer":
        found = list(_lb_addresses(status))
        return tuple(found + [entry for entry in external if entry not in found])
    if kind == "ExternalName":
        name = _str(spec.get("externalName"))
        return (("hostname", name),) if name else ()
    if external:
        return tuple(external)
    cluster_ip = _str(spec.get("clusterIP"))
    return (("ip", cluster_ip),) if cluster_ip and cluster_ip != "None" else ()


def parse_service(body: Mapping[str, Any]) -> Service:
    spec = _dict(body.get("spec"))
    kind = _str(spec.get("type")) or "ClusterIP"
    return Service(
        key=_key(body),
        type=kind,
        ports=_ports(spec.get("ports"), "port"),
        addresses=published_addresses(kind, spec, body.get("status")),
        cluster_ip=_str(spec.get("clusterIP")) or None,
    )


def endpoint_state(conditions: Mapping[str, Any]) -> bool | None:
    """None: no traffic; False: in rotation; True: terminating but serving.

    As Traefik reads EndpointSlice conditions: an endpoint is used while it is ready or serving,
    and one that is terminating but serving gets no new requests ("fenced"); ingress-nginx
    drops it (it is no longer ready) and lets requests under way finish. API conventions: an
    unknown `ready` (null) is ready, an unknown `serving` is `ready`, an unknown `terminating`
    is false.
    """
    ready = conditions.get("ready") is not False
    serving = conditions.get("serving")
    serving = ready if serving is None else serving is True
    if conditions.get("terminating") is True:
        return True if serving else None
    return False if ready else None


def parse_endpoint_slice(body: Mapping[str, Any]) -> EndpointSlice:
    labels = _str_map(_dict(body.get("metadata")).get("labels"))
    ready = []
    if _str(body.get("addressType")) in ("IPv4", "IPv6"):
        for endpoint in _list(body.get("endpoints")):
            endpoint = _dict(endpoint)
            terminating = endpoint_state(_dict(endpoint.get("conditions")))
            if terminating is None:
                continue
            pod = _str(_dict(endpoint.get("targetRef")).get("name"))
            for address in _list(endpoint.get("addresses")):
                if isinstance(address, str):
                    ready.append(Endpoint(address, pod, terminating))
    return EndpointSlice(
        key=_key(body),
        service=labels.get(SERVICE_NAME_LABEL, ""),
        ports=_ports(body.get("ports"), "port"),
        ready=tuple(ready),
    )


def _pem_blocks(text: str, label: str) -> list[str]:
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    blocks, rest = [], text
    while (start := rest.find(begin)) >= 0 and (stop := rest.find(end, start)) >= 0:
        blocks.append(rest[start : stop + len(end)] + "\n")
        rest = rest[stop + len(end) :]
    return blocks


def der_fingerprint(pem: str) -> str:
    """Hex SHA-256 of the DER inside one PEM block (the dataplane's certificate identity)."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body, validate=True)).hexdigest()


def has_tls_keys(body: Mapping[str, Any]) -> bool:
    """A Secret holding `tls.crt` or `tls.key`, whatever its type (ingress-nginx reads
    `kubernetes.io/tls` and `Opaque` Secrets alike)."""
    data = _dict(body.get("data"))
    return "tls.crt" in data or "tls.key" in data or "ca.crt" in data  # ca.crt: proxy-ssl


_MAX_AUTH_ENTRIES = 10_000


def _auth_entry(user: str, stored: str, where: str, problems: list[str]) -> str | None:
    try:
        split_entry(f"{user}:{stored}")
    except CredentialError as error:
        problems.append(f"{where}: {error}")
        return None
    return f"{user}:{stored}"


def parse_auth_secret(body: Mapping[str, Any]) -> AuthSecret | None:
    """The Secret as basic auth can read it; None when it can be neither form (keeps the
    index small: a Secret is kept when it has an `auth` key or every value is a hash)."""
    key = _key(body)
    data = _dict(body.get("data"))
    if not data or len(data) > _MAX_AUTH_ENTRIES:
        return None
    texts: dict[str, str] = {}
    for name, encoded in data.items():
        try:
            texts[str(name)] = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            texts[str(name)] = ""
    file_entries: tuple[str, ...] | None = None
    file_problems: list[str] = []
    if "auth" in texts:
        found = []
        for number, line in enumerate(texts["auth"].splitlines()[:_MAX_AUTH_ENTRIES], 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, colon, stored = line.partition(":")
            where = f"line {number}"
            if not colon or not user:
                file_problems.append(f"{where}: not user:hash")
            elif (entry := _auth_entry(user, stored.strip(), where, file_problems)) is not None:
                found.append(entry)
        file_entries = tuple(found)
    map_problems: list[str] = []
    map_entries = tuple(
        entry
        for user, stored in sorted(texts.items())
        if (entry := _auth_entry(user, stored.strip(), f"key {user!r}", map_problems))
    )
    if file_entries is None and (map_problems or not map_entries):
        return None
    return AuthSecret(key, file_entries, map_entries, tuple(file_problems), tuple(map_problems))


def parse_tls_secret(body: Mapping[str, Any]) -> TlsSecret:
    key = _key(body)
    data = _dict(body.get("data"))

    def broken(reason: str, ca: str = "", ca_only: bool = False) -> TlsSecret:
        problem = f"TLS secret {key}: {reason}"
        return TlsSecret(key, "", (), "", "", problem=problem, ca=ca, ca_only=ca_only, crl=crl)

    ca = crl = ""
    if "ca.crl" in data:  # auth-tls-secret: checked (client_auth_problem) where it is used
        try:
            crl = base64.b64decode(data.get("ca.crl") or "", validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
            crl = "ca.crl is not base64-encoded ASCII PEM"
    if "ca.crt" in data:
        try:
            ca_text = base64.b64decode(data.get("ca.crt") or "", validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
            return broken("ca.crt is not base64-encoded ASCII PEM")
        ca = "".join(_pem_blocks(ca_text, "CERTIFICATE"))
        if not ca:
            return broken("ca.crt holds no CERTIFICATE")
        if "tls.crt" not in data and "tls.key" not in data:
            return broken("has a ca.crt but no tls.crt and tls.key", ca, ca_only=True)
    try:
        cert_text = base64.b64decode(data.get("tls.crt") or "", validate=True).decode("ascii")
        key_text = base64.b64decode(data.get("tls.key") or "", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
        return broken("tls.crt or tls.key is not base64-encoded ASCII PEM")
    certs = _pem_blocks(cert_text, "CERTIFICATE")
    keys = [k for label in ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")
            for k in _pem_blocks(key_text, label)]  # fmt: skip
    if not certs or len(keys) != 1:
        return broken("needs at least one CERTIFICATE in tls.crt and one private key in tls.key")
    try:
        fingerprint = der_fingerprint(certs[0])
        names = tuple(certificate_names(certs[0]))
        not_after = x509.load_pem_x509_certificate(certs[0].encode()).not_valid_after_utc
    except (binascii.Error, ValueError, StateError):
        return broken("the certificate PEM is corrupt")
    chain = tuple(certs[1:])
    expiry = not_after.timestamp()
    return TlsSecret(
        key, certs[0], chain, keys[0], fingerprint, names=names, not_after=expiry, ca=ca, crl=crl
    )


@dataclass(slots=True)
class Snapshot:
    """Everything rendering reads, keyed for lookups. Built from the kopf indices."""

    ingresses: dict[ObjectKey, Ingress] = field(default_factory=dict)
    classes: dict[str, IngressClass] = field(default_factory=dict)
    services: dict[ObjectKey, Service] = field(default_factory=dict)
    slices: dict[ObjectKey, list[EndpointSlice]] = field(default_factory=dict)  # by service
    secrets: dict[ObjectKey, TlsSecret] = field(default_factory=dict)
    auth_secrets: dict[ObjectKey, AuthSecret] = field(default_factory=dict)
