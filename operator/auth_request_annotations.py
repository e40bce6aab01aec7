"""ingress-nginx's external authentication (`auth-url`) -> each route's `auth_request`, asked
by the proxy before it forwards (docs/access-control.md, "External authorisation").

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (same names; ours win), as ingress-nginx's `authreq` parser reads them:

- `auth-url`: `http://<host>[:port]/path[?query]` whose host names an in-cluster Service:
  `<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc`, `<svc>.<ns>` or `<svc>` (the Ingress's
  namespace); the port is the Service's (default 80). The renderer makes a cluster of that
  Service's endpoints and points the routes at it. Any other URL fails closed, with the
  reason in the Event: `https://` (the proxy does not speak TLS to that cluster), a host
  that is not a Service name (an external URL), nginx variables (but a `$host` authority).
  Any of these names without `auth-url` fails closed too (it guards nothing).
  `http(s)://$host/path` (or `$http_host`), oauth2-proxy's usual form, is `same_host`: the
  renderer resolves the path to the route serving it on each route's host (auth_host_routes.py).
- `auth-method` (default GET), `auth-signin` (nginx variables `$host`, `$scheme`,
  `$request_uri`, `$escaped_request_uri` are expanded by the proxy), `auth-signin-redirect-param`
  (default `rd`), `auth-response-headers` (comma-separated), `auth-request-redirect`.
- `auth-keepalive*` (with `auth-url`): the proxy always keeps its connections to the auth
  service alive in its pool; said in a Normal Event. `auth-cache-*`, `auth-proxy-set-headers`,
  `auth-always-set-cookie` and `auth-snippet` change what the check does and are not served:
  they are not read here, so annotation_review refuses them (the routes answer 503).

A bad value of any read key fails closed, as ingress-nginx denies such a location.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ingress_operator.access_annotations import Lookup
from ingress_operator.annotation_review import Notice, Refusals
from ingress_operator.ingress_semantics import cluster_id
from ingress_operator.model import BackendRef, Ingress

from dataplane.command.auth_request_rules import auth_request_problem
from dataplane.command.messages import AuthRequest

if TYPE_CHECKING:
    from ingress_operator.annotations import Options

AUTH_URL_NAMES = frozenset(
    {
        "auth-url",
        "auth-method",
        "auth-signin",
        "auth-signin-redirect-param",
        "auth-response-headers",
        "auth-request-redirect",
    }
)
KEEPALIVE_NAMES = frozenset(
    {
        "auth-keepalive",
        "auth-keepalive-requests",
        "auth-keepalive-timeout",
        "auth-keepalive-share-vars",
    }
)
AUTH_REQUEST_NAMES = AUTH_URL_NAMES | KEEPALIVE_NAMES
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_SERVICE_HOST = re.compile(
    rf"^(?P<svc>{_LABEL})(\.(?P<ns>{_LABEL})(\.svc(\.cluster\.local)?)?)?\.?$"
)
_METHOD = re.compile(r"^[A-Z]{1,32}$")


@dataclass(frozen=True, slots=True)
class AuthUrl:
    """What the annotations ask for (hashable: part of interned frontend keys)."""

    service: str
    namespace: str | None  # None: the Ingress's own
    port: int
    path: str  # with its query
    host: str  # the auth URL's host, the sub-request's Host
    method: str = "GET"
    signin: str | None = None
    signin_param: str = "rd"
    response_headers: tuple[str, ...] = ()
    request_redirect: str | None = None
    same_host: bool = False  # `$host`-relative: resolved per route (auth_host_routes.py)
    https: bool = False  # the URL's scheme, for `same_host`

    def target(self, namespace: str) -> tuple[str, str, BackendRef]:
        """(cluster id, the Service's namespace, the backend reference) of the auth service
        for an Ingress in `namespace`."""
        ns = self.namespace or namespace
        ref = BackendRef(self.service, port_number=self.port)
        return cluster_id(ns, self.service, ref.port_label), ns, ref

    def message(self, cluster: str) -> AuthRequest:
        return AuthRequest(
            cluster_id=cluster,
            path=self.path,
            method=self.method,
            response_headers=list(self.response_headers),
            signin=self.signin,
            signin_redirect_param=self.signin_param,
            request_redirect=self.request_redirect,
            host=self.host or None,  # None: the request's own (same_host)
        )


@dataclass(slots=True)
class AuthUrlResult(Refusals):
    auth: AuthUrl | None = None


def parse_auth_url(find: Lookup) -> AuthUrlResult:
    result = AuthUrlResult()
    found = {name: hit for name in sorted(AUTH_REQUEST_NAMES) if (hit := find(name)) is not None}
    if not found:
        return result
    url_hit = found.get("auth-url")
    if url_hit is None or not url_hit[1].strip():
        for key, _ in found.values():
            result.refuse(key, "has no effect without auth-url (remove it, or add that)")
        return result
    for name in sorted(KEEPALIVE_NAMES & found.keys()):
        message = (
            f"annotation {found.pop(name)[0]}: pysozu always keeps its connections to the "
            "auth service alive (its backend pool); nothing to set"
        )
        result.notices.append(Notice("Normal", "NoMeaningHere", message))
    url_key, url = url_hit[0], url_hit[1].strip()
    target = _service_url(url)
    if isinstance(target, str):
        result.refuse(url_key, target)
        return result
    if isinstance(target, AuthUrl):
        auth = target
    else:
        service, namespace, port, path, host = target
        auth = AuthUrl(service, namespace, port, path, host)
    fields: dict[str, Any] = {}
    if (hit := found.get("auth-method")) is not None:
        method = hit[1].strip().upper()
        if not _METHOD.match(method):
            result.refuse(hit[0], f"{hit[1]!r} is not an HTTP method")
            return result
        fields["method"] = method
    if (hit := found.get("auth-signin")) is not None and hit[1].strip():
        fields["signin"] = hit[1].strip()
    if (hit := found.get("auth-signin-redirect-param")) is not None and hit[1].strip():
        fields["signin_param"] = hit[1].strip()
    if (hit := found.get("auth-response-headers")) is not None:
        names = tuple(name.strip() for name in hit[1].split(",") if name.strip())
        fields["response_headers"] = names
    if (hit := found.get("auth-request-redirect")) is not None and hit[1].strip():
        fields["request_redirect"] = hit[1].strip()
    auth = replace(auth, **fields)
    problem = auth_request_problem(auth.message("check"))
    if problem is not None:
        keys = ", ".join(key for key, _ in found.values())
        result.refuse(url_key, f"{problem} (from {keys})")
        return result
    result.auth = auth
    return result


_SAME_HOST = re.compile(r"^(?P<scheme>https?)://\$(http_)?host(?P<path>/[^$#]*)?$")


def _service_url(url: str) -> tuple[str, str | None, int, str, str] | AuthUrl | str:
    """(service, namespace, port, path with query, host) of an in-cluster URL, a `same_host`
    AuthUrl for `http(s)://$host/path`, or why not."""
    same = _SAME_HOST.match(url)
    if same is not None:
        path = same["path"] or "/"
        return AuthUrl("", None, 0, path, "", same_host=True, https=same["scheme"] == "https")
    if "$" in url:
        return (
            f"{url!r} uses nginx variables; pysozu asks an in-cluster Service "
            "(http://<service>.<namespace>.svc[:port]/path)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"{url!r} is not a URL ({error})"
    if parts.scheme == "https":
        return f"{url!r}: https auth services are not served (use the Service's http port)"
    if parts.scheme != "http":
        return f"{url!r} is not an http:// URL"
    host = (parts.hostname or "").lower()
    match = _SERVICE_HOST.match(host)
    if match is None or parts.username is not None:
        return (
            f"{url!r}: {host!r} is not an in-cluster Service name "
            "(<service>[.<namespace>[.svc[.cluster.local]]]); external auth URLs are not served"
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    authority = parts.netloc.rpartition("@")[2]
    return match["svc"], match["ns"], port or 80, path, authority


class _Routed(Protocol):
    """What `auth_clusters` reads of the renderer's routes."""

    @property
    def options(self) -> Options: ...
    @property
    def owner(self) -> Ingress: ...


def auth_url_of(options: Options, namespace: str) -> tuple[str, AuthUrl] | None:
    """(auth cluster id, policy) of a forwarding route of an Ingress in `namespace`."""
    auth = options.auth_url
    if auth is None or options.refused or auth.same_host:
        return None
    return auth.target(namespace)[0], auth


def auth_clusters(routes: Iterable[_Routed | None]) -> dict[str, tuple[Ingress, str, BackendRef]]:
    """The auth Services the routes ask: cluster id -> (first Ingress, namespace, reference)."""
    found: dict[str, tuple[Ingress, str, BackendRef]] = {}
    for route in routes:
        auth = None if route is None or route.options.refused else route.options.auth_url
        if route is None or auth is None or auth.same_host:
            continue
        cid, namespace, ref = auth.target(route.owner.key.namespace)
        found.setdefault(cid, (route.owner, namespace, ref))
    return found
