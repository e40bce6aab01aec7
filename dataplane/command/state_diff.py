"""A routing state as requests: from scratch (`generate_requests`) or from another state (`diff`).

`generate_requests` follows the state file's order (LIFECYCLE.md): listeners, each followed by
`activate_listener` when active; clusters; HTTP frontends; certificates; HTTPS frontends; TCP
and UDP frontends; backends; health checks. Everything is sorted, so equal states give equal
request lists (and equal hashes).

`diff(a, b)` dispatches cleanly onto `a` and leaves it equal to `b`. Removals come first, from
the leaves up (backends, frontends, certificates of listeners going away, clusters, listeners),
then additions from the roots down (listeners, clusters, certificates, frontends, backends).
Three choices keep traffic flowing during a reload:
- a listener whose change can be expressed as an `update_*_listener` patch is patched, never
  closed and reopened; one that cannot (a TLS setting, a setting unset) is removed and re-added
  at the same address, and main keeps its listening socket across (`changes.apply_batch`);
- listeners are activated once their certificates, frontends and backends are in, so the first
  connection they accept finds its route;
- a listener whose address no listener of `b` takes (an address change: one goes, another
  comes) is deactivated and removed last, with its frontends and certificates, after the new
  one is added and activated;
- a certificate that changes is added before the old one is removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    AddCertificate,
    AlpnProtocols,
    DeactivateListener,
    ListenerType,
    RemoveBackend,
    RemoveCertificate,
    RemoveListener,
    Request,
    SetHealthCheck,
    UpdateHttpListenerConfig,
    UpdateHttpsListenerConfig,
    UpdateTcpListenerConfig,
    UpdateUdpListenerConfig,
)
from dataplane.command.state_rules import StateError

if TYPE_CHECKING:
    from dataplane.command.state import ConfigState

_KINDS = (ListenerType.HTTP, ListenerType.HTTPS, ListenerType.TCP, ListenerType.UDP)
_NAME = {kind: kind.name.lower() for kind in _KINDS}  # as in verbs: add_<name>_listener
_UPDATE_TYPE: dict[ListenerType, type[Any]] = {
    ListenerType.HTTP: UpdateHttpListenerConfig,
    ListenerType.HTTPS: UpdateHttpsListenerConfig,
    ListenerType.TCP: UpdateTcpListenerConfig,
    ListenerType.UDP: UpdateUdpListenerConfig,
}


def _add_listener(kind: ListenerType, listener: Any) -> list[Request]:
    """Add a listener inactive, then activate it: adding never implies binding."""
    added = Request.of(
        **{f"add_{_NAME[kind]}_listener": msgspec.structs.replace(listener, active=False)}
    )
    if not listener.active:
        return [added]
    return [
        added,
        Request.of(activate_listener=ActivateListener(address=listener.address, proxy=kind)),
    ]


def generate_requests(state: ConfigState) -> list[Request]:
    requests: list[Request] = []
    for kind in _KINDS:
        for _, listener in sorted(state.listener_table(kind).items()):
            requests += _add_listener(kind, listener)
    for _, cluster in sorted(state.clusters.items()):
        requests.append(Request.of(add_cluster=msgspec.structs.replace(cluster, health_check=None)))
    requests += [Request.of(add_http_frontend=f) for _, f in sorted(state.http_fronts.items())]
    requests += _add_certificates(state, lambda address, fingerprint: True)
    requests += [Request.of(add_https_frontend=f) for _, f in sorted(state.https_fronts.items())]
    requests += [Request.of(add_tcp_frontend=f) for _, f in sorted(state.tcp_fronts.items())]
    requests += [Request.of(add_udp_frontend=f) for _, f in sorted(state.udp_fronts.items())]
    for _, backends in sorted(state.backends.items()):
        requests += [Request.of(add_backend=backend) for backend in backends]
    for cluster_id, health_check in state.health_checks.items():
        requests.append(
            Request.of(set_health_check=SetHealthCheck(cluster_id=cluster_id, config=health_check))
        )
    return requests


def _add_certificates(state: ConfigState, wanted: Any) -> list[Request]:
    return [
        Request.of(add_certificate=AddCertificate(address=address, certificate=certificate))
        for address, known in sorted(state.certificates.items())
        for fingerprint, certificate in sorted(known.items())
        if wanted(address, fingerprint)
    ]


def _listener_patch(kind: ListenerType, old: Any, new: Any) -> list[Request] | None:
    """Requests that patch `old` into `new` in place, or None when a patch cannot say it."""
    from dataplane.command.state import ConfigState

    update_type = _UPDATE_TYPE[kind]
    changes: dict[str, Any] = {}
    for name in old.__struct_fields__:
        before, after = getattr(old, name), getattr(new, name)
        if name in ("address", "active") or before == after:
            continue
        if name not in update_type.__struct_fields__:
            return None  # bound at bind time (TLS parameters, default certificate...)
        changes[name] = AlpnProtocols(values=after) if name == "alpn_protocols" else after
    requests = []
    if changes:
        patch = update_type(address=old.address, **changes)
        # Some changes have no patch form (unsetting a value, dropping an answer): check by
        # applying the patch to a scratch state.
        scratch = ConfigState()
        scratch.listener_table(kind)[old.address] = old
        try:
            scratch.dispatch(Request.of(**{f"update_{_NAME[kind]}_listener": patch}))
        except StateError:
            return None
        if scratch.listener_table(kind)[old.address] != msgspec.structs.replace(
            new, active=old.active
        ):
            return None
        requests.append(Request.of(**{f"update_{_NAME[kind]}_listener": patch}))
    if old.active != new.active:
        toggle: Any = (
            Request.of(activate_listener=ActivateListener(address=old.address, proxy=kind))
            if new.active
            else Request.of(deactivate_listener=DeactivateListener(address=old.address, proxy=kind))
        )
        requests.append(toggle)
    return requests


Gone = set[tuple[ListenerType, SocketAddress]]  # listeners removed, or replaced by a new one


def diff(a: ConfigState, b: ConfigState) -> list[Request]:
    listener_changes, gone = _listener_changes(a, b)
    listener_additions = [r for r in listener_changes if r.verb != "activate_listener"]
    activations = [r for r in listener_changes if r.verb == "activate_listener"]
    retired = {(kind, address) for kind, address in gone if not _address_taken(b, kind, address)}
    replaced = gone - retired
    early_removals, certificate_additions, late_removals = _certificate_changes(a, b, gone)
    frontend_removals = _frontend_changes("remove", a, b, gone)
    return [
        # removals, leaves first (but not of the listeners that go for good: see the end)
        *_removed_backends(a, b),
        *_on_listeners(frontend_removals, retired, keep=False),
        *_on_listeners(early_removals, retired, keep=False),
        *(Request.of(remove_cluster=c) for c in sorted(a.clusters.keys() - b.clusters.keys())),
        *_removed_listeners(a, replaced),
        # additions, roots first
        *listener_additions,
        *(
            Request.of(add_cluster=cluster)
            for cluster_id, cluster in sorted(b.clusters.items())
            if a.clusters.get(cluster_id) != cluster  # an upsert: also changes health checks
        ),
        *certificate_additions,
        *late_removals,
        *_frontend_changes("add", b, a, gone),
        *(
            Request.of(add_backend=backend)  # an upsert: also changes weights, sticky ids
            for cluster_id, backends in sorted(b.backends.items())
            for backend in backends
            if backend not in a.backends.get(cluster_id, [])
        ),
        # a listener serves once its certificates and frontends are there
        *activations,
        # listeners that go for good, once their successors (if any) serve
        *_on_listeners(frontend_removals, retired, keep=True),
        *_on_listeners(early_removals, retired, keep=True),
        *_removed_listeners(a, retired),
    ]


_TCP_FAMILY = (ListenerType.HTTP, ListenerType.HTTPS, ListenerType.TCP)


def _address_taken(b: ConfigState, kind: ListenerType, address: SocketAddress) -> bool:
    """Whether a listener of `b` binds this address (HTTP, HTTPS and TCP share a port space)."""
    family = (ListenerType.UDP,) if kind == ListenerType.UDP else _TCP_FAMILY
    return any(address in b.listener_table(rival) for rival in family)


_REMOVAL_KIND = {
    "remove_http_frontend": ListenerType.HTTP,
    "remove_https_frontend": ListenerType.HTTPS,
    "remove_tcp_frontend": ListenerType.TCP,
    "remove_udp_frontend": ListenerType.UDP,
    "remove_certificate": ListenerType.HTTPS,
}


def _on_listeners(requests: list[Request], listeners: Gone, keep: bool) -> list[Request]:
    """The removals of frontends and certificates on `listeners` (`keep`), or the others."""
    return [
        request
        for request in requests
        if ((_REMOVAL_KIND[request.verb], request.body.address) in listeners) == keep
    ]


def _listener_changes(a: ConfigState, b: ConfigState) -> tuple[list[Request], Gone]:
    """Listeners patched in place when possible; else removed (with what they carry), re-added."""
    additions: list[Request] = []
    gone: Gone = set()
    for kind in _KINDS:
        mine, theirs = a.listener_table(kind), b.listener_table(kind)
        for address in sorted(mine.keys() | theirs.keys()):
            old, new = mine.get(address), theirs.get(address)
            patch = _listener_patch(kind, old, new) if old is not None and new is not None else None
            if patch is not None:
                additions += patch
                continue
            if old is not None:
                gone.add((kind, address))
            if new is not None:
                additions += _add_listener(kind, new)
    return additions, gone


def _removed_listeners(a: ConfigState, gone: Gone) -> list[Request]:
    requests = []
    for kind, address in sorted(gone):
        if a.listener_table(kind)[address].active:
            deactivate = DeactivateListener(address=address, proxy=kind)
            requests.append(Request.of(deactivate_listener=deactivate))
        requests.append(Request.of(remove_listener=RemoveListener(address=address, proxy=kind)))
    return requests


def _removed_backends(a: ConfigState, b: ConfigState) -> list[Request]:
    requests = []
    for cluster_id, backends in sorted(a.backends.items()):
        kept = {(x.backend_id, x.address) for x in b.backends.get(cluster_id, [])}
        for x in backends:
            if (x.backend_id, x.address) not in kept:
                removal = RemoveBackend(
                    cluster_id=cluster_id, backend_id=x.backend_id, address=x.address
                )
                requests.append(Request.of(remove_backend=removal))
    return requests


def _frontend_changes(
    verb: str, source: ConfigState, other: ConfigState, gone: Gone
) -> list[Request]:
    """Frontends of `source` that `other` lacks or has differently, or whose listener is gone."""
    requests = []
    for kind in _KINDS:
        theirs = other.frontend_table(kind)
        for key, front in sorted(source.frontend_table(kind).items()):
            if theirs.get(key) != front or (kind, front.address) in gone:
                requests.append(Request.of(**{f"{verb}_{_NAME[kind]}_frontend": front}))
    return requests


def _certificate_changes(
    a: ConfigState, b: ConfigState, gone: Gone
) -> tuple[list[Request], list[Request], list[Request]]:
    """(removals before additions, additions, removals after additions).

    A certificate leaving with its listener, or changing under the same fingerprint, must go
    first; one that is merely no longer wanted goes after the new ones arrive, so a renewed
    certificate never leaves a moment without one.
    """

    def removal(address: SocketAddress, fingerprint: str) -> Request:
        return Request.of(
            remove_certificate=RemoveCertificate(address=address, fingerprint=fingerprint)
        )

    early: list[Request] = []
    late: list[Request] = []
    for address, known in sorted(a.certificates.items()):
        theirs = b.certificates.get(address, {})
        for fingerprint, certificate in sorted(known.items()):
            if fingerprint not in theirs and (ListenerType.HTTPS, address) not in gone:
                late.append(removal(address, fingerprint))
            elif theirs.get(fingerprint) != certificate or (ListenerType.HTTPS, address) in gone:
                early.append(removal(address, fingerprint))

    def wanted(address: SocketAddress, fingerprint: str) -> bool:
        old = a.certificates.get(address, {}).get(fingerprint)
        return (ListenerType.HTTPS, address) in gone or old != b.certificates[address][fingerprint]

    return early, _add_certificates(b, wanted), late
