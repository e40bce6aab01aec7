"""kopf wiring: `@kopf.on.event` handlers keep compact indices and wake the reconciler.

Only low-level event handlers, so kopf writes nothing on users' objects (no annotations, no
finalizers, no status). The indices are kept here rather than with `@kopf.index`: kopf makes
every object's worker wait until all objects are indexed and wakes all the waiters after each
one (O(n²) wake-ups), which kept 3,000 objects from being served for over a minute here, while
plain event handlers took 7 s (see LIFECYCLE.md). What an index would give, these give too:
compact typed values per key, updated before the reconciler is woken, dropped on deletion.

A restarted controller must not push a partial state (it would remove the routes of objects not
seen yet): `Indices.settled` stays False until every object listed at startup has been seen.

A watch that kopf restarts after 410 Gone (resource version too old) re-lists: the objects that
exist come again as events of type None, and the ones deleted meanwhile never come at all. Such
events after the startup are reported to `on_relist`, and `sweep` drops what a fresh listing no
longer holds (sweep.py). Every stored object carries the sequence number of its last event, so
an object that arrived after the listing started is never swept by that listing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf
from ingress_operator.model import (
    AuthSecret,
    EndpointSlice,
    Ingress,
    IngressClass,
    ObjectKey,
    Service,
    Snapshot,
    TlsSecret,
    has_tls_keys,
    parse_auth_secret,
    parse_endpoint_slice,
    parse_ingress,
    parse_ingress_class,
    parse_service,
    parse_tls_secret,
)

log = logging.getLogger("pysozu.ingress.indices")

INGRESSES = ("networking.k8s.io", "v1", "ingresses")
INGRESS_CLASSES = ("networking.k8s.io", "v1", "ingressclasses")
SERVICES = ("v1", "services")
ENDPOINT_SLICES = ("discovery.k8s.io", "v1", "endpointslices")
SECRETS = ("v1", "secrets")
RESOURCES = (INGRESSES, INGRESS_CLASSES, SERVICES, ENDPOINT_SLICES, SECRETS)
HELM_RELEASE_TYPE = "helm.sh/release.v1"
# Helm's release Secrets (large, and never TLS) stay on the API server, as ingress-nginx
# keeps them; a TLS key pair may be in a kubernetes.io/tls or an Opaque Secret.
FIELD_SELECTORS: dict[tuple[str, ...], str] = {SECRETS: f"type!={HELM_RELEASE_TYPE}"}


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _key(body: Mapping[str, Any]) -> ObjectKey:
    meta = _meta(body)
    return ObjectKey(str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def watched(class_name: str | None) -> tuple[tuple[str, ...], ...]:
    """The resources listed and watched: all, or all but IngressClasses when the class is
    named by the flag (`--ingress-class-name`: no cluster-scoped read at all)."""
    return RESOURCES if class_name is None else tuple(r for r in RESOURCES if r != INGRESS_CLASSES)


class Indices:
    def __init__(self, named_class: IngressClass | None = None) -> None:
        """`named_class`: the one class known, never watched (`--ingress-class-name`)."""
        self.resources = watched(named_class.name if named_class else None)
        self.ingresses: dict[ObjectKey, Ingress] = {}
        self.classes: dict[str, IngressClass] = {}
        if named_class is not None:
            self.classes[named_class.name] = named_class
        self.services: dict[ObjectKey, Service] = {}
        self.slices: dict[ObjectKey, EndpointSlice] = {}  # by the slice's own key
        self.secrets: dict[ObjectKey, TlsSecret] = {}
        self.auth_secrets: dict[ObjectKey, AuthSecret] = {}  # basic auth (auth-secret)
        self._pending: set[str] | None = None  # uids listed at startup and not yet seen
        self._seen: set[str] = set()  # uids seen before the startup listing answered
        self._sequence = 0  # events applied so far
        # per resource: the table key of each stored object -> the sequence of its last event
        self._stamps: dict[tuple[str, ...], dict[Any, int]] = {r: {} for r in RESOURCES}
        self.on_relist: Callable[[tuple[str, ...]], None] | None = None
        self.changes: dict[tuple[str, ...], int] = dict.fromkeys(RESOURCES, 0)  # per resource

    # -- startup barrier ----------------------------------------------------------------------

    def expect(self, uids: Iterable[str]) -> None:
        self._pending = set(uids) - self._seen
        self._seen = set()
        log.info("%d listed objects not seen yet", len(self._pending))

    def settle(self) -> None:
        """Give up waiting (the listing failed or took too long)."""
        self._pending = set()

    @property
    def settled(self) -> bool:
        return self._pending is not None and not self._pending

    # -- events -------------------------------------------------------------------------------

    def apply(
        self, resource: tuple[str, ...], event_type: str | None, body: Mapping[str, Any]
    ) -> None:
        uid = str(_meta(body).get("uid") or "")
        if self._pending is None:
            self._seen.add(uid)
        elif self._pending:
            self._pending.discard(uid)
        elif event_type is None and self.on_relist is not None:
            self.on_relist(resource)  # a listing after the startup one: kopf re-listed
        key: Any = _key(body)
        deleted = event_type == "DELETED"
        value: Any = None
        if resource == INGRESSES:
            value = None if deleted else parse_ingress(body)
        elif resource == INGRESS_CLASSES:
            key = key.name
            value = None if deleted else parse_ingress_class(body)
        elif resource == SERVICES:
            value = None if deleted else parse_service(body)
        elif resource == ENDPOINT_SLICES:
            value = None if deleted else parse_endpoint_slice(body)
        elif resource == SECRETS:
            # Only Secrets with a key pair or a ca.crt (proxy-ssl-secret) are kept (a broken one
            # too: its problem is reported), and those basic auth can read.
            value = parse_tls_secret(body) if not deleted and has_tls_keys(body) else None
            auth = None if deleted else parse_auth_secret(body)
            _put(self.auth_secrets, key, auth)
            if value is None and auth is not None:
                self.secrets.pop(key, None)
                value = auth  # stamped below, so a re-list sweeps it too
        else:
            return
        self._sequence += 1
        self.changes[resource] += 1
        if resource != SECRETS or not isinstance(value, AuthSecret):
            _put(self._table(resource), key, value)
        _put(self._stamps[resource], key, None if value is None else self._sequence)

    def _table(self, resource: tuple[str, ...]) -> dict[Any, Any]:
        tables: dict[tuple[str, ...], dict[Any, Any]] = {
            INGRESSES: self.ingresses,
            INGRESS_CLASSES: self.classes,
            SERVICES: self.services,
            ENDPOINT_SLICES: self.slices,
            SECRETS: self.secrets,
        }
        return tables[resource]

    # -- sweeping after a re-list -------------------------------------------------------------

    def mark(self) -> int:
        """The sequence now: objects stamped at or before it existed when a listing starts."""
        return self._sequence

    def sweep(self, resource: tuple[str, ...], listed: Iterable[ObjectKey], mark: int) -> list[Any]:
        """Drop the objects of `resource` that a listing started at `mark` does not hold and
        that no event has touched since; return their keys."""
        names = {key.name if resource == INGRESS_CLASSES else key for key in listed}
        stamps, table = self._stamps[resource], self._table(resource)
        gone = [key for key, stamp in stamps.items() if stamp <= mark and key not in names]
        for key in gone:
            del stamps[key]
            table.pop(key, None)
            if resource == SECRETS:
                self.auth_secrets.pop(key, None)
        if gone:
            self.changes[resource] += 1
        return gone

    def routing_version(self) -> int:
        """Changes when an Ingress or an IngressClass changed (claims.ClaimIndex rebuilds)."""
        return self.changes[INGRESSES] + self.changes[INGRESS_CLASSES]

    def snapshot(self) -> Snapshot:
        by_service: dict[ObjectKey, list[EndpointSlice]] = {}
        for endpoint_slice in self.slices.values():
            service = ObjectKey(endpoint_slice.key.namespace, endpoint_slice.service)
            by_service.setdefault(service, []).append(endpoint_slice)
        for slices in by_service.values():
            slices.sort(key=lambda s: s.key)
        return Snapshot(
            ingresses=dict(self.ingresses),
            classes=dict(self.classes),
            services=dict(self.services),
            slices=by_service,
            secrets=dict(self.secrets),
            auth_secrets=dict(self.auth_secrets),
        )


def _put(table: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def build_registry(resources: tuple[tuple[str, ...], ...] = RESOURCES) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The official client's discovery: in-cluster service account, then KUBECONFIG.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.peering.standalone = True
        settings.scanning.disabled = True
        settings.posting.enabled = False  # our Events are posted by events.py
        for resource, selector in FIELD_SELECTORS.items():
            settings.watching.field_selectors[tuple(resource)] = selector  # type: ignore[index]
        await memo.controller.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: Any, **_: Any) -> None:
        await memo.controller.stop()

    for resource in resources:
        handler = _event_handler(resource)
        kopf.on.event(*resource, id=f"changed-{resource[-1]}", registry=registry)(handler)
    return registry


def _event_handler(watched: tuple[str, ...]) -> Any:
    async def changed(memo: Any, type: str | None, body: Any, **_: Any) -> None:
        memo.controller.indices.apply(watched, type, body)
        memo.controller.reconciler.trigger()

    return changed
