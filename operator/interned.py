"""Interned frontend and backend requests, with their encoding.

An unchanged route renders to the very same `Request` (and the same bytes), so re-rendering a
thousand Ingresses costs dictionary lookups rather than building and encoding ten thousand
messages; the encodings let the desired state tell what changed without comparing messages.
Bounded: the cache is emptied when full, which only costs speed. Memoization only: callers see
the same results as without it.
"""

from __future__ import annotations

from collections.abc import Callable

from ingress_operator.access_annotations import Access
from ingress_operator.auth_request_annotations import AuthUrl
from ingress_operator.canary import CanaryRule
from ingress_operator.client_auth_annotations import ClientTls
from ingress_operator.cors_annotations import Cors
from ingress_operator.custom_errors_annotations import ErrorPlan, message
from ingress_operator.model import ObjectKey
from ingress_operator.rewrites import Rewritten

from dataplane.command import codec
from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    LoadBalancingParams,
    PathRule,
    PathRuleKind,
    RedirectPolicy,
    RedirectScheme,
    Request,
    RequestHttpFrontend,
    RulePosition,
)

Encoded = tuple[Request, bytes]
DEFAULT_BACKEND_RULE = PathRule(kind=PathRuleKind.PREFIX, value="")
_LIMIT = 200_000
_entries: dict[tuple[object, ...], Encoded] = {}


def encoded(request: Request) -> Encoded:
    return request, codec.encode(request)


def _interned(key: tuple[object, ...], build: Callable[[], Request | None]) -> Encoded | None:
    entry = _entries.get(key)
    if entry is None:
        request = build()
        if request is None:
            return None
        if len(_entries) >= _LIMIT:
            _entries.clear()
        entry = _entries[key] = encoded(request)
    return entry


def backend(
    cluster_id: str, ip: str, port: int, weight: int | None, backup: bool = False
) -> Encoded | None:
    """`add_backend` for an endpoint (None when the address is not an IP address); a
    terminating endpoint is a backup backend (see render.py)."""

    def build() -> Request | None:
        try:
            address = SocketAddress(ip, port)
        except ValueError:
            return None
        params = LoadBalancingParams(weight=weight) if weight is not None else None
        body = AddBackend(
            cluster_id=cluster_id,
            backend_id=str(address),
            address=address,
            load_balancing_parameters=params,
            backup=True if backup else None,
        )
        return Request.of(add_backend=body)

    return _interned(("backend", cluster_id, ip, port, weight, backup), build)


def frontend(
    verb: str,
    address: SocketAddress,
    host: str,
    kind: PathRuleKind | None,
    value: str,
    cluster_id: str,
    owner: ObjectKey,
    redirect: bool,
    auth: bool = False,
    answer: tuple[RedirectPolicy, str] | None = None,
    host_header: str | None = None,
    access: Access | None = None,
    canary: tuple[str, CanaryRule] | None = None,
    rewritten: Rewritten | None = None,
    cors: Cors | None = None,
    auth_url: tuple[str, AuthUrl] | None = None,
    client_tls: ClientTls | None = None,
    errors: ErrorPlan | None = None,
) -> Encoded:
    """`add_http(s)_frontend` for a route; `kind=None` is the defaultBackend: a catch-all
    checked after every tree rule (POST position). `access`: its source lists, rate limits
    and body size."""

    def build() -> Request:
        path = PathRule(kind=kind, value=value) if kind is not None else DEFAULT_BACKEND_RULE
        body = RequestHttpFrontend(
            cluster_id=cluster_id,
            address=address,
            hostname=host,
            path=path,
            position=RulePosition.TREE if kind is not None else RulePosition.POST,
            tags={"namespace": owner.namespace, "ingress": owner.name},
            redirect=RedirectPolicy.PERMANENT_REDIRECT if redirect else None,
            redirect_scheme=RedirectScheme.USE_HTTPS if redirect else None,
            required_auth=True if auth else None,
            rewrite_host=host_header,
        )
        if answer is not None:  # (policy, template): the answer is its cluster's template
            body.redirect, body.redirect_template = answer
        if rewritten is not None:  # rewrite-target and its X-Forwarded-Prefix
            body.rewrite_path = rewritten.template
            body.headers = rewritten.headers
        if access is not None:
            body.allowed_sources = list(access.allowed)
            body.denied_sources = list(access.denied)
            zone = f"{owner.namespace}/{owner.name}"
            body.rate_limits = access.rate_limits(zone)
            body.connection_limit = access.connection_limit(zone)
            body.max_body_size = access.max_body_size
        if canary is not None:  # (cluster, rule): the canary alternative (canary.py)
            body.canary = canary[1].message(canary[0])
        if cors is not None:  # enable-cors (cors_annotations.py)
            body.cors = cors.policy()
        if auth_url is not None:  # (cluster, policy): ask it first (auth_request_annotations.py)
            body.auth_request = auth_url[1].message(auth_url[0])
        if client_tls is not None:  # auth-tls-* (client_auth_annotations.py)
            body.client_auth = client_tls.message()
        if errors is not None:  # custom-http-errors (custom_errors_annotations.py)
            body.custom_errors = message(errors)
        return Request.of(**{verb: body})

    key = (
        verb, address, host, kind, value, cluster_id, owner, redirect, auth, answer, host_header,
        access, canary, rewritten, cors, auth_url, client_tls, errors,
    )  # fmt: skip
    entry = _interned(key, build)
    assert entry is not None  # build never declines a frontend
    return entry
