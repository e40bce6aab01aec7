"""ingress-nginx's `custom-http-errors` -> each route's `custom_errors` (docs/custom-errors.md).

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (ours wins): a comma-separated list of status codes (300..599). When a backend
answers one of them, the proxy serves the request from the Ingress's `default-backend`
annotation's Service instead (its first port: a cluster of its own), sending X-Code, X-Format,
X-Original-URI, X-Request-ID and, per route, X-Namespace, X-Ingress-Name, X-Service-Name and
X-Service-Port, as ingress-nginx does.

It is not a restriction, so nothing fails closed: a bad value, or no `default-backend` to
serve the pages (pysozu has no controller-wide default backend), is reported in a Warning
Event and the routes serve the backends' answers as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingress_operator.access_annotations import Lookup
from ingress_operator.ingress_semantics import cluster_id
from ingress_operator.model import BackendRef, Ingress, ObjectKey, Service

from dataplane.command.messages import CustomErrors

CUSTOM_ERRORS_NAMES = frozenset({"custom-http-errors"})
Codes = tuple[int, ...]
# What a frontend needs, hashable (interned keys): codes, error cluster, static headers.
ErrorPlan = tuple[Codes, str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class ErrorsResult:
    codes: Codes | None = None
    problems: list[str] = field(default_factory=list)


def parse_custom_errors(find: Lookup) -> ErrorsResult:
    result = ErrorsResult()
    hit = find("custom-http-errors")
    if hit is None:
        return result
    key, value = hit
    codes: list[int] = []
    for raw in value.split(","):
        text = raw.strip()
        if not text.isdigit() or not 300 <= int(text) <= 599:
            result.problems.append(
                f"annotation {key}: {text!r} is not a status code 300..599; "
                "the backends' answers are served as they are"
            )
            return result
        if int(text) not in codes:
            codes.append(int(text))
    result.codes = tuple(codes)
    return result


def error_service(
    owner: Ingress, codes: Codes | None, backend: str | None, services: dict[ObjectKey, Service]
) -> tuple[str, BackendRef] | str | None:
    """(error cluster id, its Service reference) for an Ingress asking for error pages, a
    problem to report when it cannot have them, or None when it asks for nothing."""
    if codes is None:
        return None
    where = "annotation custom-http-errors"
    if backend is None:
        return f"{where}: no default-backend annotation to serve error pages; not served"
    namespace = owner.key.namespace
    service = services.get(ObjectKey(namespace, backend))
    if service is None or not service.ports:
        return f"{where}: default-backend service {namespace}/{backend} not found; not served"
    ref = BackendRef(service=backend, port_number=service.ports[0].port)
    return cluster_id(namespace, backend, ref.port_label), ref


def plan(codes: Codes, error_cluster: str, owner: Ingress, ref: BackendRef) -> ErrorPlan:
    """A route's error pages: its static headers name the Ingress and the route's Service."""
    headers = (
        ("X-Namespace", owner.key.namespace),
        ("X-Ingress-Name", owner.key.name),
        ("X-Service-Name", ref.service),
        ("X-Service-Port", ref.port_label),
    )
    return codes, error_cluster, headers


def message(errors: ErrorPlan) -> CustomErrors:
    codes, cid, headers = errors
    return CustomErrors(codes=list(codes), cluster_id=cid, headers=dict(headers))
