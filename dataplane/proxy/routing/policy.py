"""What a matched route asks of a request, in sozu's decision order (`route_from_request`).

redirect (301/302/308) -> deny (401) -> the cluster's https_redirect (301) -> basic auth (401)
-> rewrites and header edits -> forward. `decide` is pure: it returns either the answer to send
or the edits to make, and the session does the I/O. Routes without any policy (the common case)
cost one attribute test.
"""

from __future__ import annotations

import re

from dataplane.command.messages import Cluster, RedirectScheme
from dataplane.proxy.http1.head import RequestHead
from dataplane.proxy.http1.request_path import with_query
from dataplane.proxy.routing.cors import CorsOrigin
from dataplane.proxy.routing.credentials import Credentials
from dataplane.proxy.routing.route import HSTS_HEADER, IfAbsent
from dataplane.proxy.routing.router import Route

_HEADER_LINE = re.compile(rb"\r\n([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[^\r]*")


class Answer:
    """Answer the client with `status` (and these template variables) instead of forwarding."""

    __slots__ = ("hsts", "status", "template", "variables")

    def __init__(
        self,
        status: int,
        variables: dict[str, str],
        template: str | None = None,
        hsts: str = "",
    ):
        self.status = status
        self.variables = variables
        self.template = template
        self.hsts = hsts


class Edits:
    """Changes to the forwarded request (and its response) asked by the route."""

    __slots__ = ("host", "path", "request_headers", "response_headers")

    def __init__(self, route: Route, host: str | None, path: str | None) -> None:
        self.host = host
        self.path = path
        self.request_headers = route.headers_request
        self.response_headers = route.headers_response


def has_policy(route: Route) -> bool:
    return bool(
        route.redirect_status
        or route.required_auth
        or route.rewrite_host
        or route.rewrite_path
        or route.headers_request
        or route.headers_response  # HSTS rides here
        or route.auth  # external authorisation (request_route.Guarded)
    )


def decide(
    route: Route,
    cluster: Cluster,
    request: RequestHead,
    host: str,
    scheme: str,
    credentials: Credentials | None = None,
) -> Answer | Edits | None:
    """None: forward as is. Answer: refuse or redirect. Edits: forward, changed.

    Rewrite captures come from the path the route matched (normalised, no query); a
    rewritten path keeps the request's query. Redirects keep the target as sent."""
    path = request.path
    new_host, new_path = route.rewrite(host, request.route_path)
    if new_path is not None:
        new_path = with_query(new_path, path)
    status = route.redirect_status
    if status is not None:
        target_scheme = {
            RedirectScheme.USE_HTTP: "http",
            RedirectScheme.USE_HTTPS: "https",
        }.get(route.redirect_scheme, scheme)
        location = _location(target_scheme, new_host or host, route.rewrite_port, new_path or path)
        return Answer(
            status, {"REDIRECT_LOCATION": location}, route.redirect_template, route.hsts or ""
        )
    if cluster.https_redirect and scheme == "http":
        location = _location("https", host, cluster.https_redirect_port, path)
        return Answer(301, {"REDIRECT_LOCATION": location})
    if route.required_auth and not (
        credentials or Credentials(cluster.authorized_hashes)  # the worker passes its own
    ).check(request.authorization):
        return Answer(
            401, {"WWW_AUTHENTICATE": _challenge(cluster.www_authenticate)}, hsts=route.hsts or ""
        )
    if new_host or new_path or route.headers_request or route.headers_response:
        return Edits(route, new_host, new_path)
    return None


def _location(scheme: str, host: str, port: int | None, path: str) -> str:
    default = 443 if scheme == "https" else 80
    authority = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{authority}{path}"


def _challenge(realm: str | None) -> str:
    return "" if realm is None else f'Basic realm="{realm}"'


def rewrite_request_head(head: bytes, request: RequestHead, edits: Edits) -> bytes:
    """Apply host/path rewrites and request header edits to a forwarded head."""
    if edits.path is not None:
        line_end = head.index(b"\r\n")
        method, _target, version = head[:line_end].split(b" ")
        head = b" ".join((method, edits.path.encode("ascii"), version)) + head[line_end:]
    if edits.host is not None:
        original = request.host.decode("ascii", "replace")
        head = set_headers(head, (("Host", edits.host), ("X-Forwarded-Host", original)))
    return set_headers(head, edits.request_headers)


def set_headers(head: bytes, edits: tuple[tuple[str, str], ...]) -> bytes:
    """Replace (or with an empty value, delete) headers in a complete head; an `IfAbsent`
    value is added only when the head has no header of that name."""
    if not edits:
        return head
    value = edits[0][1]
    # A CORS route's headers come first, precomputed: appended in one piece to a head that
    # has no Access-Control-* field yet (the common case), else edited like the others.
    if type(value) is CorsOrigin and b"\r\naccess-control-" not in head.lower():
        head = head[:-2] + value.lines + b"\r\n"
        edits = edits[value.span :]
        if not edits:
            return head
    names = {name.lower().encode("ascii") for name, value in edits if type(value) is not IfAbsent}
    present = set(names)  # a header we set ourselves is not added again
    body_start = len(head) - 2  # the final CRLF of the blank line
    kept = [head[: head.index(b"\r\n")]]
    for line in _HEADER_LINE.finditer(head, 0, body_start):
        name = line.group(1).lower()
        if name not in names:
            kept.append(line.group(0)[2:])
            present.add(name)
    kept += [
        f"{name}: {value}".encode("latin-1")
        for name, value in edits
        if value and (type(value) is not IfAbsent or name.lower().encode("ascii") not in present)
    ]
    return b"\r\n".join(kept) + b"\r\n\r\n"


def edited_hsts(edits: tuple[tuple[str, str], ...]) -> str | None:
    """The HSTS value among a route's response edits (answers after forwarding carry it)."""
    for name, value in edits:
        if name == HSTS_HEADER:
            return value
    return None


def with_hsts(answer: bytes, status: int, hsts: str | None) -> bytes:
    """A default answer with the route's HSTS header, on 3xx, 401 and 5xx as sozu sends it."""
    if not hsts or not (300 <= status < 400 or status == 401 or status >= 500):
        return answer
    line_end = answer.index(b"\r\n")
    header = f"\r\n{HSTS_HEADER}: {hsts}".encode("latin-1")
    return answer[:line_end] + header + answer[line_end:]
