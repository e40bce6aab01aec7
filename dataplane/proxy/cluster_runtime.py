"""A cluster as the worker's hot path reads it (`ClusterRuntime`): flat attributes, its backends.

Split from `clusters.py`, which stays interpreted (it mirrors state requests), so that this
class is compiled in the compiled build: a session, the router and the backend choice read a
dozen of its attributes per request, each a generic attribute lookup (~200 instructions)
while it was interpreted (issue 22). `clusters.py` re-exports everything here.
"""

from __future__ import annotations

from typing import Final

from dataplane.command.address import SocketAddress
from dataplane.command.backend_tls import BackendTlsContext
from dataplane.command.messages import AddBackend, Cluster, StickyCookie
from dataplane.proxy.balancing.load_balancing import Backend, BackendSet
from dataplane.proxy.routing.credentials import Credentials
from dataplane.proxy.routing.hash_key import HashKey

SECURE_NEVER: Final = 0
SECURE_HTTPS: Final = 1
SECURE_ALWAYS: Final = 2
_SECURE = {"never": SECURE_NEVER, "https": SECURE_HTTPS, "always": SECURE_ALWAYS}


def sticky_attributes(cookie: StickyCookie | None) -> tuple[bytes, int, int]:
    """The sticky cookie's fixed attributes (`; Path=/...`), its Expires offset in seconds
    (-1: none) and when it is Secure: rendered once per cluster configuration."""
    if cookie is None:
        return b"; Path=/", -1, SECURE_NEVER
    parts = [f"; Path={cookie.path}"]
    if cookie.domain is not None:
        parts.append(f"; Domain={cookie.domain}")
    if cookie.max_age is not None:
        parts.append(f"; Max-Age={cookie.max_age}")
    if cookie.same_site is not None:
        parts.append(f"; SameSite={cookie.same_site}")
    if cookie.http_only:
        parts.append("; HttpOnly")
    expires = -1 if cookie.expires is None else cookie.expires
    return "".join(parts).encode("ascii"), expires, _SECURE[cookie.secure]


class ClusterRuntime:
    """A cluster as the hot path needs it: flat attributes and its backends."""

    __slots__ = (
        "back_timeout",
        "backend_tls",
        "backends",
        "cluster_id",
        "config",
        "connect_timeout",
        "credentials",
        "hash_key",
        "http2",
        "https_redirect",
        "live_backends",
        "max_connections_per_ip",
        "plain_forward",
        "retry_after",
        "sticky_attributes",
        "sticky_expires",
        "sticky_name",
        "sticky_secure",
        "sticky_session",
    )

    def __init__(self, config: Cluster) -> None:
        self.cluster_id = config.cluster_id
        self.backends = BackendSet()
        self.live_backends: set[Backend] = set()
        # route_request's decision for a request with no edits and no body limit (most):
        # made once, then shared (an immutable route_decision.Forward of this very object)
        self.plain_forward: object = None
        self.configure(config)

    def configure(self, config: Cluster) -> None:
        self.config = config
        self.sticky_session = config.sticky_session
        self.https_redirect = config.https_redirect
        self.http2 = bool(config.http2)  # backends speak h2c (prior knowledge)
        # TLS to the backends: one SSLContext per cluster configuration (docs/backend-tls.md)
        tls = config.backend_tls
        self.backend_tls = None if tls is None else BackendTlsContext(tls, self.http2)
        self.max_connections_per_ip = config.max_connections_per_ip or 0
        self.retry_after = config.retry_after or 0
        # Overrides of the listener's settings; falsy means "the listener's" (`a or b` to read).
        self.connect_timeout = float(config.connect_timeout or 0)
        self.back_timeout = float(config.back_timeout or 0)
        self.sticky_name = (config.sticky_name or "").encode("ascii")
        self.sticky_attributes, self.sticky_expires, self.sticky_secure = sticky_attributes(
            config.sticky_cookie
        )
        self.backends.configure(config.load_balancing, config.load_metric)
        self.credentials = Credentials(config.authorized_hashes)
        self.hash_key = HashKey.build(config.hash_key)

    def add_backend(self, request: AddBackend) -> None:
        self.live_backends.add(self.backends.add(request))

    def remove_backend(self, backend_id: str, address: SocketAddress) -> None:
        self.backends.remove(backend_id, address)
        self.live_backends = set(self.backends)
