"""The routing state: what main and every worker agree the proxy should do.

`ConfigState` holds listeners, clusters, frontends, backends, certificates and health checks,
changes only through `dispatch` (one state request at a time), and can rebuild itself as a list of
requests (`generate_requests`, the state file) or turn into another state (`diff`).

Rules, following sozu's ConfigState and stricter where sozu would silently misread:
- a request that fails changes nothing (every check runs before the first write);
- adding what exists, or removing or updating what does not, is an error;
- `add_cluster` is an upsert; `add_backend` too, keyed by (backend_id, address), as in sozu;
- frontends need their listener (of the same protocol); certificates need their HTTPS listener;
  a listener that something still uses cannot be removed;
- as in sozu, frontends and backends may name a cluster that does not exist (yet): scripts may
  add them in any order, and `remove_cluster` removes the cluster alone (its routes then answer
  503 until the cluster comes back, or until they are removed too);
- HTTP, HTTPS and TCP listeners share one address space; UDP listeners have their own.
Stored messages are never mutated in place (they are replaced), so `copy` is cheap.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from dataplane.command.address import SocketAddress
from dataplane.command.backend_tls import check_backend_tls
from dataplane.command.lazy_import import lazy_module
from dataplane.command.listener_update import merge_listener_update
from dataplane.command.messages import (
    STATE_VERBS,
    ActivateListener,
    AddBackend,
    AddCertificate,
    CertificateAndKey,
    Cluster,
    DeactivateListener,
    HealthCheckConfig,
    HttpListenerConfig,
    HttpsListenerConfig,
    ListenerType,
    PathRuleKind,
    RemoveBackend,
    RemoveCertificate,
    RemoveListener,
    ReplaceCertificate,
    Request,
    RequestHttpFrontend,
    RequestTcpFrontend,
    RequestUdpFrontend,
    SetHealthCheck,
    TcpListenerConfig,
    UdpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateHttpsListenerConfig,
    UpdateTcpListenerConfig,
    UpdateUdpListenerConfig,
)
from dataplane.command.state_queries import StateQueries
from dataplane.command.state_rules import (
    AnyListener,
    StateError,
    certificate_fingerprint,
    certificate_names,
    check_alpn,
    check_certificate,
    check_certificate_servable,
    check_cluster,
    check_fingerprint,
    check_h2_knobs,
    check_health_check,
    check_http11_offered,
    check_http_frontend,
    check_id,
    check_listener,
    check_no_h2c,
    check_non_negative,
    check_port,
    check_token,
    check_trusted_proxies,
    with_names,
)

if TYPE_CHECKING:
    import hashlib
else:  # OpenSSL (4.8 MB of memory) loads on first use: command/lazy_import.py
    hashlib = lazy_module("hashlib", globals())

__all__ = [
    "ConfigState",
    "StateError",
    "certificate_fingerprint",
    "certificate_names",
    "frontend_key",
]

_LISTENER_LABEL = {
    ListenerType.HTTP: "http",
    ListenerType.HTTPS: "https",
    ListenerType.TCP: "tcp",
    ListenerType.UDP: "udp",
}
# HTTP, HTTPS and TCP listeners bind the same (TCP) port space; UDP listeners have their own.
_TCP_FAMILY = [ListenerType.HTTP, ListenerType.HTTPS, ListenerType.TCP]
_PATH_MARK = {PathRuleKind.PREFIX: "P", PathRuleKind.REGEX: "R", PathRuleKind.EQUALS: "="}


def _address_to_wire(obj: Any) -> Any:
    if isinstance(obj, SocketAddress):
        return obj.to_wire()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


# Maps sorted by key, so equal states hash equal whatever order their dicts were filled in.
_canonical = msgspec.json.Encoder(enc_hook=_address_to_wire, order="deterministic")


def frontend_key(front: RequestHttpFrontend) -> str:
    """A route's identity, as sozu writes it: `address;hostname;P/path[;METHOD]`."""
    key = f"{front.address};{front.hostname};{_PATH_MARK[front.path.kind]}{front.path.value}"
    return f"{key};{front.method}" if front.method is not None else key


def _owned(message: Any) -> Any:
    """A private copy of a message, so a caller mutating theirs cannot change the state."""
    return _copy.deepcopy(message)


def _hash64(content: Any) -> int:
    """The first 8 bytes of the SHA-256 of the canonical JSON (sorted maps) of `content`."""
    return int.from_bytes(hashlib.sha256(_canonical.encode(content)).digest()[:8], "big")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class ConfigState(StateQueries):
    """The routing state. Read the attributes; change it only through `dispatch`."""

    def __init__(self) -> None:
        self.http_listeners: dict[SocketAddress, HttpListenerConfig] = {}
        self.https_listeners: dict[SocketAddress, HttpsListenerConfig] = {}
        self.tcp_listeners: dict[SocketAddress, TcpListenerConfig] = {}
        self.udp_listeners: dict[SocketAddress, UdpListenerConfig] = {}
        self.clusters: dict[str, Cluster] = {}
        self.http_fronts: dict[str, RequestHttpFrontend] = {}
        self.https_fronts: dict[str, RequestHttpFrontend] = {}
        self.tcp_fronts: dict[SocketAddress, RequestTcpFrontend] = {}
        self.udp_fronts: dict[SocketAddress, RequestUdpFrontend] = {}
        self.backends: dict[str, list[AddBackend]] = {}
        self.certificates: dict[SocketAddress, dict[str, CertificateAndKey]] = {}

    @property
    def health_checks(self) -> dict[str, HealthCheckConfig]:
        """Health checks per cluster id (they live in the cluster's configuration)."""
        return {
            cluster_id: cluster.health_check
            for cluster_id, cluster in sorted(self.clusters.items())
            if cluster.health_check is not None
        }

    # -----------------------------------------------------------------------------------------
    # dispatch

    def dispatch(self, request: Request) -> None:
        """Apply one state request, or raise StateError and change nothing."""
        verb = request.verb
        if verb not in STATE_VERBS:
            raise StateError(f"{verb} is not a state request")
        handler: Callable[[Any], None] = getattr(self, f"_{verb}")
        handler(request.body)

    # clusters and health checks

    def _add_cluster(self, cluster: Cluster) -> None:
        check_cluster(cluster)
        check_backend_tls(cluster)
        self.clusters[cluster.cluster_id] = _owned(cluster)

    def _remove_cluster(self, cluster_id: str) -> None:
        if cluster_id not in self.clusters:
            raise StateError(f"cluster {cluster_id} not found")
        del self.clusters[cluster_id]

    def _set_health_check(self, request: SetHealthCheck) -> None:
        cluster = self._cluster(request.cluster_id)
        check_health_check(request.cluster_id, request.config)
        updated = msgspec.structs.replace(cluster, health_check=_owned(request.config))
        check_backend_tls(updated)
        self.clusters[request.cluster_id] = updated

    def _remove_health_check(self, cluster_id: str) -> None:
        cluster = self._cluster(cluster_id)
        if cluster.health_check is None:
            raise StateError(f"cluster {cluster_id} has no health check")
        self.clusters[cluster_id] = msgspec.structs.replace(cluster, health_check=None)

    def _cluster(self, cluster_id: str) -> Cluster:
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise StateError(f"cluster {cluster_id} not found")
        return cluster

    # listeners

    def listener_table(self, kind: ListenerType) -> dict[SocketAddress, Any]:
        """The listeners of one protocol, by address."""
        tables: dict[ListenerType, dict[SocketAddress, Any]] = {
            ListenerType.HTTP: self.http_listeners,
            ListenerType.HTTPS: self.https_listeners,
            ListenerType.TCP: self.tcp_listeners,
            ListenerType.UDP: self.udp_listeners,
        }
        return tables[kind]

    def frontend_table(self, kind: ListenerType) -> dict[Any, Any]:
        """The frontends served by listeners of one protocol."""
        tables: dict[ListenerType, dict[Any, Any]] = {
            ListenerType.HTTP: self.http_fronts,
            ListenerType.HTTPS: self.https_fronts,
            ListenerType.TCP: self.tcp_fronts,
            ListenerType.UDP: self.udp_fronts,
        }
        return tables[kind]

    def _add_listener(self, kind: ListenerType, listener: AnyListener) -> None:
        label = _LISTENER_LABEL[kind]
        check_listener(label, listener)
        rivals = [ListenerType.UDP] if kind == ListenerType.UDP else _TCP_FAMILY
        for rival in rivals:
            if listener.address in self.listener_table(rival):
                raise StateError(
                    f"{label} listener {listener.address}: the address is already used by "
                    f"the {_LISTENER_LABEL[rival]} listener"
                )
        self.listener_table(kind)[listener.address] = _owned(listener)

    def _add_http_listener(self, listener: HttpListenerConfig) -> None:
        self._add_listener(ListenerType.HTTP, listener)

    def _add_https_listener(self, listener: HttpsListenerConfig) -> None:
        self._add_listener(ListenerType.HTTPS, listener)

    def _add_tcp_listener(self, listener: TcpListenerConfig) -> None:
        self._add_listener(ListenerType.TCP, listener)

    def _add_udp_listener(self, listener: UdpListenerConfig) -> None:
        self._add_listener(ListenerType.UDP, listener)

    def _listener(self, kind: ListenerType, address: SocketAddress) -> Any:
        listener = self.listener_table(kind).get(address)
        if listener is None:
            raise StateError(f"{_LISTENER_LABEL[kind]} listener {address} not found")
        return listener

    def _remove_listener(self, request: RemoveListener) -> None:
        self._listener(request.proxy, request.address)
        users = self._listener_users(request.proxy, request.address)
        if users:
            raise StateError(
                f"{_LISTENER_LABEL[request.proxy]} listener {request.address} still has "
                f"{users}: remove them first"
            )
        del self.listener_table(request.proxy)[request.address]

    def _listener_users(self, kind: ListenerType, address: SocketAddress) -> str:
        fronts = self.frontend_table(kind).values()
        count = sum(1 for front in fronts if front.address == address)
        parts = [_plural(count, "frontend")] if count else []
        certificates = len(self.certificates.get(address, {})) if kind == ListenerType.HTTPS else 0
        parts += [_plural(certificates, "certificate")] if certificates else []
        return " and ".join(parts)

    def _activate_listener(self, request: ActivateListener) -> None:
        self._set_active(request.proxy, request.address, True)

    def _deactivate_listener(self, request: DeactivateListener) -> None:
        self._set_active(request.proxy, request.address, False)

    def _set_active(self, kind: ListenerType, address: SocketAddress, active: bool) -> None:
        listener = self._listener(kind, address)
        self.listener_table(kind)[address] = msgspec.structs.replace(listener, active=active)

    def _update_http_listener(self, patch: UpdateHttpListenerConfig) -> None:
        self._update_listener(ListenerType.HTTP, patch)

    def _update_https_listener(self, patch: UpdateHttpsListenerConfig) -> None:
        self._update_listener(ListenerType.HTTPS, patch)

    def _update_tcp_listener(self, patch: UpdateTcpListenerConfig) -> None:
        self._update_listener(ListenerType.TCP, patch)

    def _update_udp_listener(self, patch: UpdateUdpListenerConfig) -> None:
        self._update_listener(ListenerType.UDP, patch)

    def _update_listener(self, kind: ListenerType, patch: Any) -> None:
        """Check a patch, then merge it (listener_update.py: None or an empty answers map
        keeps; the worker's listeners take the same merge)."""
        listener = self._listener(kind, patch.address)
        where = f"{_LISTENER_LABEL[kind]} listener {patch.address}"
        check_non_negative(where, patch)
        if isinstance(patch, UpdateHttpsListenerConfig) and patch.alpn_protocols is not None:
            check_alpn(where, patch.alpn_protocols.values)  # an empty list resets to the default
        if isinstance(patch, UpdateHttpListenerConfig):
            check_h2_knobs(where, patch)
            if patch.sticky_name is not None:
                check_token(f"{where}: sticky_name", patch.sticky_name)
            if patch.sozu_id_header is not None:
                check_token(f"{where}: sozu_id_header", patch.sozu_id_header)
            if patch.trusted_proxies is not None:
                check_trusted_proxies(where, patch.trusted_proxies)
        if patch.public_address is not None:
            check_port(f"{where}: public_address", patch.public_address)
        updated = merge_listener_update(listener, patch)
        if isinstance(updated, HttpsListenerConfig):
            check_http11_offered(where, updated)
            check_no_h2c(where, updated)
        self.listener_table(kind)[patch.address] = updated

    # frontends

    def _check_front_targets(
        self, kind: ListenerType, cluster_id: str | None, address: SocketAddress
    ) -> None:
        if cluster_id is not None:
            check_id("cluster_id", cluster_id)
        if address not in self.listener_table(kind):
            raise StateError(
                f"no {_LISTENER_LABEL[kind]} listener at {address}: add the listener first"
            )

    def _add_http_frontend(self, front: RequestHttpFrontend) -> None:
        self._add_routed_front(ListenerType.HTTP, self.http_fronts, front)

    def _add_https_frontend(self, front: RequestHttpFrontend) -> None:
        self._add_routed_front(ListenerType.HTTPS, self.https_fronts, front)

    def _add_routed_front(
        self, kind: ListenerType, table: dict[str, RequestHttpFrontend], front: RequestHttpFrontend
    ) -> None:
        check_http_frontend(front)
        if front.hsts is not None and kind == ListenerType.HTTP:
            raise StateError(f"frontend {frontend_key(front)}: HSTS is only valid over HTTPS")
        if front.passthrough and kind == ListenerType.HTTP:
            raise StateError(f"frontend {frontend_key(front)}: passthrough is for HTTPS listeners")
        if front.client_auth is not None and kind == ListenerType.HTTP:
            raise StateError(f"frontend {frontend_key(front)}: client_auth is for HTTPS listeners")
        self._check_front_targets(kind, front.cluster_id, front.address)
        key = frontend_key(front)
        if key in table:
            raise StateError(f"{_LISTENER_LABEL[kind]} frontend {key} already exists")
        table[key] = _owned(front)

    def _remove_http_frontend(self, front: RequestHttpFrontend) -> None:
        self._remove_routed_front(ListenerType.HTTP, self.http_fronts, front)

    def _remove_https_frontend(self, front: RequestHttpFrontend) -> None:
        self._remove_routed_front(ListenerType.HTTPS, self.https_fronts, front)

    def _remove_routed_front(
        self, kind: ListenerType, table: dict[str, RequestHttpFrontend], front: RequestHttpFrontend
    ) -> None:
        key = frontend_key(front)
        if key not in table:
            raise StateError(f"{_LISTENER_LABEL[kind]} frontend {key} not found")
        del table[key]

    def _add_tcp_frontend(self, front: RequestTcpFrontend) -> None:
        self._add_stream_front(ListenerType.TCP, self.tcp_fronts, front)

    def _add_udp_frontend(self, front: RequestUdpFrontend) -> None:
        self._add_stream_front(ListenerType.UDP, self.udp_fronts, front)

    def _add_stream_front(
        self, kind: ListenerType, table: dict[SocketAddress, Any], front: Any
    ) -> None:
        """TCP and UDP frontends: one cluster per listener address (sozu would overwrite)."""
        check_id("cluster_id", front.cluster_id)
        check_port(f"{_LISTENER_LABEL[kind]} frontend", front.address)
        self._check_front_targets(kind, front.cluster_id, front.address)
        existing = table.get(front.address)
        if existing is not None:
            raise StateError(
                f"{_LISTENER_LABEL[kind]} frontend {front.address} already exists "
                f"(cluster {existing.cluster_id})"
            )
        table[front.address] = _owned(front)

    def _remove_tcp_frontend(self, front: RequestTcpFrontend) -> None:
        self._remove_stream_front(ListenerType.TCP, self.tcp_fronts, front)

    def _remove_udp_frontend(self, front: RequestUdpFrontend) -> None:
        self._remove_stream_front(ListenerType.UDP, self.udp_fronts, front)

    def _remove_stream_front(
        self, kind: ListenerType, table: dict[SocketAddress, Any], front: Any
    ) -> None:
        existing = table.get(front.address)
        if existing is None or existing.cluster_id != front.cluster_id:
            raise StateError(
                f"{_LISTENER_LABEL[kind]} frontend {front.address} of cluster "
                f"{front.cluster_id} not found"
            )
        del table[front.address]

    # backends

    def _add_backend(self, backend: AddBackend) -> None:
        check_id("backend_id", backend.backend_id)
        check_port(f"backend {backend.backend_id}", backend.address)
        check_non_negative(f"backend {backend.backend_id}", backend)
        if backend.load_balancing_parameters is not None:
            check_non_negative(f"backend {backend.backend_id}", backend.load_balancing_parameters)
        check_id("cluster_id", backend.cluster_id)
        others = [
            known
            for known in self.backends.get(backend.cluster_id, [])
            if (known.backend_id, known.address) != (backend.backend_id, backend.address)
        ]
        others.append(_owned(backend))
        others.sort(key=lambda known: (known.backend_id, known.address))
        self.backends[backend.cluster_id] = others

    def _remove_backend(self, backend: RemoveBackend) -> None:
        known = self.backends.get(backend.cluster_id, [])
        kept = [
            b for b in known if (b.backend_id, b.address) != (backend.backend_id, backend.address)
        ]
        if len(kept) == len(known):
            raise StateError(
                f"backend {backend.backend_id} at {backend.address} of cluster "
                f"{backend.cluster_id} not found"
            )
        if kept:
            self.backends[backend.cluster_id] = kept
        else:
            del self.backends[backend.cluster_id]

    # certificates

    def _certificates_at(self, address: SocketAddress) -> dict[str, CertificateAndKey]:
        self._listener(ListenerType.HTTPS, address)
        return self.certificates.get(address, {})

    def _add_certificate(self, request: AddCertificate) -> None:
        known = self._certificates_at(request.address)
        fingerprint = check_certificate(request.certificate)
        check_certificate_servable(request.certificate)
        if fingerprint in known:
            raise StateError(
                f"certificate {fingerprint} already exists on listener {request.address}"
            )
        certificate = with_names(_owned(request.certificate))
        self.certificates[request.address] = {**known, fingerprint: certificate}

    def _remove_certificate(self, request: RemoveCertificate) -> None:
        known = self._certificates_at(request.address)
        fingerprint = check_fingerprint(request.fingerprint)
        if fingerprint not in known:
            raise StateError(f"certificate {fingerprint} not found on listener {request.address}")
        remaining = {fp: cert for fp, cert in known.items() if fp != fingerprint}
        if remaining:
            self.certificates[request.address] = remaining
        else:
            del self.certificates[request.address]

    def _replace_certificate(self, request: ReplaceCertificate) -> None:
        known = self._certificates_at(request.address)
        old = check_fingerprint(request.old_fingerprint)
        if old not in known:
            raise StateError(f"certificate {old} not found on listener {request.address}")
        new = check_certificate(request.new_certificate)
        check_certificate_servable(request.new_certificate)
        if new != old and new in known:
            raise StateError(f"certificate {new} already exists on listener {request.address}")
        # The new certificate goes in before the old one goes out: no moment without a cert.
        replaced = {**known, new: with_names(_owned(request.new_certificate))}
        if new != old:
            del replaced[old]
        self.certificates[request.address] = replaced

    # -----------------------------------------------------------------------------------------
    # whole-state operations

    def generate_requests(self) -> list[Request]:
        """Requests that rebuild this state from empty, in the state file's order."""
        from dataplane.command.state_diff import generate_requests

        return generate_requests(self)

    def diff(self, other: ConfigState) -> list[Request]:
        """Requests that turn this state into `other`; see state_diff for the order."""
        from dataplane.command.state_diff import diff

        return diff(self, other)

    def copy(self) -> ConfigState:
        twin = ConfigState()
        for name, value in vars(self).items():
            if name == "backends":
                value = {cluster_id: list(known) for cluster_id, known in value.items()}
            elif name == "certificates":
                value = {address: dict(known) for address, known in value.items()}
            setattr(twin, name, dict(value))
        return twin

    def hash(self) -> int:
        """A 64-bit hash of the content, the same in every process and every run."""
        return _hash64(self.generate_requests())

    def cluster_hashes(self) -> dict[str, int]:
        """Per cluster: a hash of its configuration, frontends and backends."""
        informations = self.cluster_informations(self.clusters)
        return {cluster_id: _hash64(info) for cluster_id, info in informations.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigState) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable: compare by content, never hash

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(value)}" for name, value in vars(self).items())
        return f"ConfigState({counts})"
