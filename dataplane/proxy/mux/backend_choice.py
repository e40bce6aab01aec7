"""Which backend of a cluster takes the next connection attempt, and the sticky cookie that
goes with it: the same rule for HTTP/1.1 sessions and HTTP/2 streams (h1 and h2c backends).

`next_backend` asks the cluster's load balancer, skipping the backends that failed this
request (`failed`, backend ids), and counts `backend.connect.retries` for a try after a failed
one. `sticky_cookie_value` is the `Set-Cookie` value (`name=id; Path=/`, plus the cluster's
`sticky_cookie` attributes) when the cluster has sticky sessions and the client did not
already name this backend; empty otherwise.
"""

from __future__ import annotations

from time import gmtime, time
from typing import TYPE_CHECKING

from dataplane.proxy.clusters import SECURE_ALWAYS, SECURE_NEVER

if TYPE_CHECKING:
    from dataplane.proxy.balancing.backend import Backend
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.listener import HttpListener
    from dataplane.proxy.mux.host import Host


def next_backend(
    loop: Host,
    cluster: ClusterRuntime,
    sticky_id: str | None,
    failed: set[str] | frozenset[str],
    key: bytes | None = None,
) -> Backend | None:
    # An HTTP/1.1 session's `failed` is a frozenset already (shared and empty until a connect
    # fails): passed as it is, no copy per new client connection.
    exclude = failed if type(failed) is frozenset else frozenset(failed)
    backend = cluster.backends.select(loop.now, key, sticky_id=sticky_id, exclude=exclude)
    if backend is not None and failed:  # `backend.connect.retries`: a try after a failed one
        loop.metrics.cluster(cluster.cluster_id).retried(backend.backend_id)
    return backend


def sticky_cookie_value(
    cluster: ClusterRuntime, backend: Backend, sticky_id: str | None, listener: HttpListener
) -> bytes:
    return sticky_cookie(
        cluster, backend, sticky_id, listener.sticky_name, listener.scheme == "https"
    )


def sticky_cookie(
    cluster: ClusterRuntime, backend: Backend, sticky_id: str | None, name: bytes, tls: bool
) -> bytes:
    """The Set-Cookie value (`name`: the listener's cookie name; `tls`: the request came over
    TLS, for `secure = "https"`)."""
    if not cluster.sticky_session:
        return b""
    chosen = backend.sticky_id or backend.backend_id
    if chosen == sticky_id:
        return b""
    name = cluster.sticky_name or name
    value = b"%s=%s%s" % (name, chosen.encode("ascii", "replace"), cluster.sticky_attributes)
    if cluster.sticky_expires >= 0:
        value += b"; Expires=" + http_date(time() + cluster.sticky_expires).encode()
    secure = cluster.sticky_secure
    if secure != SECURE_NEVER and (secure == SECURE_ALWAYS or tls):
        value += b"; Secure"
    return value


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float) -> str:
    """`Thu, 01 Jan 1970 00:00:00 GMT`, as `email.utils.formatdate(usegmt=True)` writes it
    (never the locale's names), without the `email` package's imports (0.7 MB a worker)."""
    t = gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
