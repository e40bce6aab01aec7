"""The result of routing: a frontend's policy, validated and precomputed once.

A `Route` is built when its frontend is added, so the request path reads plain attributes:
no enum conversions, no template parsing, no header validation per request. Header edits are
checked here (token name, no CR/LF/NUL in the value) because they end up verbatim on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.command.messages import (
    HeaderPosition,
    HstsConfig,
    RedirectPolicy,
    RedirectScheme,
    RequestHttpFrontend,
)
from dataplane.proxy.routing.access import Access
from dataplane.proxy.routing.canary import CanaryRoute
from dataplane.proxy.routing.client_auth import ClientAuthPolicy
from dataplane.proxy.routing.cors import Cors
from dataplane.proxy.routing.rules import HostPattern, PathPattern, RewriteTemplate, RouterError

if TYPE_CHECKING:
    from dataplane.proxy.routing.auth_request import AuthPolicy
    from dataplane.proxy.routing.error_pages import ErrorPages

_REDIRECT_STATUS = {
    RedirectPolicy.PERMANENT: 301,
    RedirectPolicy.FOUND: 302,
    RedirectPolicy.PERMANENT_REDIRECT: 308,
}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

HeaderEdits = tuple[tuple[str, str], ...]
HSTS_HEADER = "Strict-Transport-Security"
DEFAULT_HSTS_MAX_AGE = 31_536_000


class IfAbsent(str):
    """A response header value added only when the backend's response has no such header."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """What a matched frontend asks of the request.

    The loop's decision order (sozu's `route_from_request`): `redirect_status` (301/302/308),
    then `deny` (401: an UNAUTHORIZED policy, or a clusterless FORWARD frontend), then the
    cluster's https_redirect, `required_auth`, `rewrite()` and the header edits, and finally
    `cluster_id`. A header edit with an empty value deletes that header. `hsts` is the rendered
    Strict-Transport-Security value (HTTPS only), also the last of `headers_response`; default
    answers (3xx, 401, 5xx) carry it too.
    """

    cluster_id: str | None
    frontend: RequestHttpFrontend
    host_pattern: HostPattern
    path_pattern: PathPattern
    deny: bool
    redirect: RedirectPolicy
    redirect_scheme: RedirectScheme
    redirect_template: str | None
    rewrite_host: RewriteTemplate | None
    rewrite_path: RewriteTemplate | None
    rewrite_port: int | None
    headers_request: HeaderEdits
    headers_response: HeaderEdits
    required_auth: bool
    hsts: str | None
    hsts_force_replace: bool
    access: Access | None  # source lists, rate limits, body size (None: none set)
    canary: CanaryRoute | None  # the canary alternative of `cluster_id` (None: none set)
    cors: Cors | None  # the CORS policy (routing/cors.py; None: none, or a deny route)
    auth: AuthPolicy | None  # external authorisation (routing/auth_request.py; None: none)
    client_auth: ClientAuthPolicy | None  # client certificates (routing/client_auth.py)
    error_pages: ErrorPages | None  # custom_errors (routing/error_pages.py; None: none)
    # The cluster id of a route that asks for none of the above but its policy (redirects,
    # rewrites, header edits, basic and external auth: `has_policy`), else None: the request
    # path reads this one attribute of an interpreted class instead of eight.
    plain: str | None = None

    @classmethod
    def build(cls, front: RequestHttpFrontend, host: HostPattern, path: PathPattern) -> Route:
        """Validate a frontend's policy fields (RouterError) and precompute its Route."""
        from dataplane.proxy.routing.auth_request import AuthPolicy  # it uses policy.py
        from dataplane.proxy.routing.error_pages import ErrorPages  # so does this

        redirect = RedirectPolicy(front.redirect or RedirectPolicy.FORWARD)
        deny = redirect is RedirectPolicy.UNAUTHORIZED or (
            front.cluster_id is None and redirect is RedirectPolicy.FORWARD
        )
        hsts = _hsts_edit(front.hsts)
        if deny:
            # As sozu does: a deny route keeps only its HSTS header, nothing else applies.
            requests: HeaderEdits = ()
            responses: HeaderEdits = hsts
            rewrite_host = rewrite_path = None
        else:
            requests, responses = _header_edits(front)
            responses += hsts
            caps = (host.capture_count, path.capture_count)
            rewrite_host = _template(front.rewrite_host, caps)
            rewrite_path = _template(front.rewrite_path, caps)
        port = front.rewrite_port
        if port is not None and not 1 <= port <= 65535:
            raise RouterError(f"invalid rewrite_port {port}: must be 1..65535")
        access = Access.build(front)
        canary = None if deny else CanaryRoute.build(front.canary)
        cors = None if deny else Cors.build(front.cors)
        client_auth = ClientAuthPolicy.build(front.client_auth)
        error_pages = None if deny else ErrorPages.build(front.custom_errors)
        extras = (access, canary, cors, client_auth, error_pages)
        plain = None if deny or any(extra is not None for extra in extras) else front.cluster_id
        return cls(
            cluster_id=front.cluster_id,
            frontend=front,
            host_pattern=host,
            path_pattern=path,
            deny=deny,
            redirect=RedirectPolicy.UNAUTHORIZED if deny else redirect,
            redirect_scheme=RedirectScheme(front.redirect_scheme or RedirectScheme.USE_SAME),
            redirect_template=front.redirect_template or None,
            rewrite_host=rewrite_host,
            rewrite_path=rewrite_path,
            rewrite_port=None if deny else port,
            headers_request=requests,
            headers_response=responses,
            required_auth=bool(front.required_auth),
            hsts=str(hsts[0][1]) if hsts else None,
            hsts_force_replace=bool(hsts) and type(hsts[0][1]) is not IfAbsent,
            access=access,
            canary=canary,
            cors=cors,
            auth=None if deny else AuthPolicy.build(front.auth_request, hsts_value(front.hsts)),
            client_auth=client_auth,
            error_pages=error_pages,
            plain=plain,
        )

    @property
    def redirect_status(self) -> int | None:
        return _REDIRECT_STATUS.get(self.redirect)

    def rewrite(self, host: str, path: str) -> tuple[str | None, str | None]:
        """(new host, new path) from the rewrite templates; None where no rewrite applies."""
        if self.rewrite_host is None and self.rewrite_path is None:
            return None, None
        host_caps = self.host_pattern.captures(host)
        path_caps = self.path_pattern.captures(path)
        return (
            self.rewrite_host.render(host_caps, path_caps) if self.rewrite_host else None,
            self.rewrite_path.render(host_caps, path_caps) if self.rewrite_path else None,
        )


def _template(text: str | None, caps: tuple[int, int]) -> RewriteTemplate | None:
    return RewriteTemplate.parse(text, *caps) if text else None


def _header_edits(front: RequestHttpFrontend) -> tuple[HeaderEdits, HeaderEdits]:
    requests: list[tuple[str, str]] = []
    responses: list[tuple[str, str]] = []
    for header in front.headers:
        if not _HEADER_NAME.fullmatch(header.key) or any(c in header.val for c in "\r\n\0"):
            raise RouterError(f"invalid header edit {header.key!r}: {header.val!r}")
        # HEADER_POSITION_UNSPECIFIED edits are dropped, as sozu drops them.
        if header.position in (HeaderPosition.REQUEST, HeaderPosition.BOTH):
            requests.append((header.key, header.val))
        if header.position in (HeaderPosition.RESPONSE, HeaderPosition.BOTH):
            responses.append((header.key, header.val))
    return tuple(requests), tuple(responses)


def hsts_value(config: HstsConfig | None) -> str | None:
    """The Strict-Transport-Security value of an HSTS setting; None when it is off."""
    if config is None or not config.enabled:
        return None
    max_age = DEFAULT_HSTS_MAX_AGE if config.max_age is None else config.max_age
    value = f"max-age={max_age}"
    if config.include_subdomains:
        value += "; includeSubDomains"
    if config.preload:
        value += "; preload"
    return value


def _hsts_edit(config: HstsConfig | None) -> HeaderEdits:
    """The response edit for HSTS: replace the backend's header when `force_replace_backend`
    is set, else add ours only where the backend sent none (sozu's SetIfAbsent)."""
    value = hsts_value(config)
    if value is None:
        return ()
    assert config is not None
    return ((HSTS_HEADER, value if config.force_replace_backend else IfAbsent(value)),)
