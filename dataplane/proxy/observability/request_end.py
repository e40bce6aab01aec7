"""What a finished request leaves for the metrics and the access log: one `RequestEnd` tuple.

Sessions append them to their host's `ended` list; the worker hands them over in batches
(worker/request_ends.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dataplane.proxy.observability.access_log_format import Fixed


class Routed(Protocol):
    """What a request's end needs of its cluster (a `ClusterRuntime` in the worker)."""

    @property
    def cluster_id(self) -> str: ...


# What a request leaves when it ends: the loop's time then, when the request started, when the
# backend's response head came (None: no backend answered), the status sent (0: none), the
# message (set: the proxy answered or gave up; such requests are logged at the error level),
# the cluster it was routed to, the backend it reached (None: none), bytes in, bytes out, its
# request id, and the access log's parts of its line (None: the access log does not want it).
RequestEnd = tuple[
    float,
    float,
    "float | None",
    int,
    "str | None",
    "Routed | None",
    "str | None",
    int,
    int,
    bytes,
    "Fixed | None",
]
