"""What `route_request` (mux/request_route.py) decides for a request: refuse it, forward it,
or forward it once its external authorisation agrees.

Named tuples of their own module: request_route.py is compiled by mypyc, which evaluates a
NamedTuple's annotations when the module loads (these name classes imported for type checking
only), while this module stays interpreted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.routing.auth_request import AuthPolicy
    from dataplane.proxy.routing.cors import HeaderEdits
    from dataplane.proxy.routing.policy import Edits


class Refusal(NamedTuple):
    """Answer `status` (a default answer, or the template `template`) instead of forwarding."""

    status: int
    message: str = ""
    variables: dict[str, str] | None = None
    template: str | None = None
    hsts: str | None = None  # the route's HSTS value ("": none; None: not routed)
    cluster: ClusterRuntime | None = None  # the cluster routed to, when there is one
    cors: HeaderEdits | None = None  # the route's CORS headers ((): none; None: not routed)


class Forward(NamedTuple):
    cluster: ClusterRuntime
    edits: Edits | None
    body_limit: int | None  # the frontend's max_body_size (None: no limit)


class Guarded(NamedTuple):
    """A `Forward` that waits for its route's external authorisation (mux/auth_request.py):
    a type of its own, so that routes without one pay nothing (`has_policy` covers it)."""

    cluster: ClusterRuntime
    edits: Edits | None
    body_limit: int | None
    auth: AuthPolicy
