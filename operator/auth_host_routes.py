"""A `$host`-relative `auth-url` (oauth2-proxy's usual `https://$host/oauth2/auth`) resolved to
the route that serves that path on the protected route's own host.

nginx fetches such a URL from itself: the sub-request is routed like `GET <path>` on the
request's host. The renderer knows every route it renders, so `resolve` picks the one the
dataplane would pick (router.py: on that host only, EQUALS, then REGEX, then the longest
PREFIX) and the protected route asks that route's cluster directly, its Host header the
request's own (the dataplane's default for `auth_request.host`, as nginx's `$host`).

It fails closed (the protected route's auth cluster has no backend: answered 500, with an
Event) when pysozu could not reproduce that exactly: no fixed host (wildcard, hostless), no
route for the path, the route itself or a route with its own
auth, restrictions, redirect, rewrite, canary, error pages or TLS to its backends, or an
`http://` URL on a host whose routes redirect to HTTPS (nginx would get the 308).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

from ingress_operator.ingress_semantics import ANY_HOST
from ingress_operator.model import Ingress, ObjectKey

from dataplane.command.messages import PathRuleKind
from dataplane.command.regexes import RegexError, compile_regex

if TYPE_CHECKING:
    from ingress_operator.access_annotations import Access
    from ingress_operator.annotations import Options
    from ingress_operator.auth_request_annotations import AuthUrl
    from ingress_operator.rewrites import Rewritten

RouteKey = tuple[str, PathRuleKind, str]
DEFAULT_KEY: RouteKey = (ANY_HOST, PathRuleKind.PREFIX, "")  # the defaultBackend's (no path)


class Routed(Protocol):
    """What `resolve` reads of the renderer's routes."""

    @property
    def cluster(self) -> str: ...
    @property
    def owner(self) -> Ingress: ...
    @property
    def options(self) -> Options: ...
    @property
    def app_root(self) -> str | None: ...
    @property
    def access(self) -> Access | None: ...
    @property
    def canary(self) -> object | None: ...
    @property
    def rewritten(self) -> Rewritten | None: ...
    @property
    def errors(self) -> object | None: ...


R = TypeVar("R", bound=Routed)


def lookup(routes: Mapping[RouteKey, R], host: str, path: str) -> R | str:
    """The route serving `GET path` on `host` (EQUALS, then the first REGEX by text, then the
    longest PREFIX, as router.py), or why none."""
    regexes: list[tuple[str, R]] = []
    best: tuple[int, str, R] | None = None
    for (name, kind, value), route in routes.items():
        if name != host:
            continue
        if kind is PathRuleKind.EQUALS:
            if value == path:
                return route
        elif kind is PathRuleKind.REGEX:
            regexes.append((value, route))
        elif path.startswith(value) and (
            best is None or (-len(value), value) < (-best[0], best[1])
        ):
            best = (len(value), value, route)
    for value, route in sorted(regexes, key=lambda item: item[0]):
        try:
            if compile_regex(value).fullmatch(path) is not None:
                return route
        except RegexError:
            continue  # the dataplane refuses that rule too
    if best is None:
        return f"no route serves {host}{path}"
    return best[2]


def resolve(
    routes: Mapping[RouteKey, R],
    key: RouteKey,
    path: str,
    https: bool,
    redirects: Callable[[str, R], bool],
) -> R | str:
    """The route whose cluster answers the auth sub-request of the route at `key` (the auth
    URL's `path`, query included; `https`: its scheme; `redirects(host, route)`: whether plain
    HTTP to that route is redirected to HTTPS), or why it cannot be used."""
    host = key[0]
    if host == ANY_HOST or host.startswith("*.") or host.startswith("~"):
        return f"the rule for {host or '*'!r} has no fixed host to resolve $host against"
    target = lookup(routes, host, path.partition("?")[0])
    if isinstance(target, str):
        return target
    where = f"{host}{path.partition('?')[0]}"
    if target is routes[key] or target.owner is routes[key].owner:
        return f"{where} is served by the protected route itself (a loop)"
    options = target.options
    if options.refused:
        return f"the route serving {where} fails closed"
    if target.app_root is not None or options.redirect is not None:
        return f"the route serving {where} redirects"
    if not https and redirects(host, target):
        return f"{where} over http:// is redirected to HTTPS (use https://$host)"
    reasons = (
        (options.auth_url is not None, "has its own auth-url"),
        (options.required_auth, "asks for basic auth"),
        (target.access is not None and _restricts(target.access), "has access restrictions"),
        (target.canary is not None, "has a canary"),
        (target.rewritten is not None, "rewrites its path"),
        (target.errors is not None, "has custom error pages"),
        (options.backend_tls is not None, "speaks TLS to its backends"),
        (options.upstream_vhost is not None, "sets its own upstream Host"),
    )
    for found, why in reasons:
        if found:
            return f"the route serving {where} ({target.owner.key}) {why}"
    return target


def _restricts(access: Access) -> bool:
    return bool(access.allowed or access.denied or access.rates or access.connections)


def unresolved_cluster_id(ingress: Ingress) -> str:
    """The backendless auth cluster of routes whose `$host` auth-url did not resolve: their
    sub-requests find no backend and the dataplane answers 500, never lets them through."""
    return f"{ingress.key.namespace}/{ingress.key.name}:-noauth"


def same_host_auths(
    routes: Mapping[RouteKey, R], default: R | None, redirects: Callable[[str, R], bool]
) -> tuple[dict[RouteKey, tuple[str, AuthUrl]], list[tuple[ObjectKey, str]]]:
    """Each route (the defaultBackend's at DEFAULT_KEY) with a `same_host` auth-url ->
    (auth cluster, policy), and the problems (Ingress key, message) of those that fail closed
    (auth cluster `unresolved_cluster_id`)."""
    found: dict[RouteKey, tuple[str, AuthUrl]] = {}
    problems: dict[tuple[ObjectKey, str], None] = {}
    auth = None if default is None or default.options.refused else default.options.auth_url
    if default is not None and auth is not None and auth.same_host:
        found[DEFAULT_KEY] = (unresolved_cluster_id(default.owner), auth)
        message = "annotation auth-url: the defaultBackend has no host to resolve $host against"
        problems[(default.owner.key, message + ", so it answers 500")] = None
    for key, route in routes.items():
        auth = route.options.auth_url
        if auth is None or not auth.same_host or route.options.refused:
            continue
        target = resolve(routes, key, auth.path, auth.https, redirects)
        if isinstance(target, str):
            found[key] = (unresolved_cluster_id(route.owner), auth)
            message = f"annotation auth-url: {target}, so its routes answer 500"
            problems.setdefault((route.owner.key, message), None)
        else:
            found[key] = (target.cluster, auth)
    return found, list(problems)
