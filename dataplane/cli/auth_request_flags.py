"""`--auth-*` flags of `pysozu frontend http|https add`: the route's external authorisation.

A pysozu extension (docs/access-control.md, "External authorisation"): `--auth-cluster` names
the cluster asked before each request (`--auth-path`, `--auth-method`, `--auth-response-header`
copied into the forwarded request, `--auth-signin` for the 302 a 401 becomes, with
`--auth-signin-redirect-param`, `--auth-request-redirect` for `X-Auth-Request-Redirect`).
"""

from __future__ import annotations

import argparse

from dataplane.command.auth_request_rules import auth_request_problem
from dataplane.command.messages import AuthRequest

_FLAGS = ("path", "method", "signin", "signin_redirect_param", "request_redirect", "host")


def add_auth_request_flags(add: argparse.ArgumentParser) -> None:
    flags = add.add_argument_group("external authorisation (docs/access-control.md)")
    flags.add_argument("--auth-cluster", metavar="CLUSTER", help="cluster asked first")
    flags.add_argument("--auth-path", metavar="PATH", help="its target (default /)")
    flags.add_argument("--auth-method", metavar="METHOD", help="its method (default GET)")
    flags.add_argument(
        "--auth-response-header",
        action="append",
        metavar="NAME",
        help="header copied from its 2xx answer into the forwarded request (repeatable)",
    )
    flags.add_argument("--auth-host", metavar="HOST", help="its Host (default: the request's)")
    flags.add_argument("--auth-signin", metavar="URL", help="a 401 becomes a 302 to URL")
    flags.add_argument(
        "--auth-signin-redirect-param", metavar="NAME", help="query name of the URL (rd)"
    )
    flags.add_argument(
        "--auth-request-redirect",
        metavar="VALUE",
        help="X-Auth-Request-Redirect (default: the request's URI)",
    )


def auth_request_from(a: argparse.Namespace) -> AuthRequest | None:
    """The policy the flags describe (None without --auth-cluster); bad values are
    ArgumentTypeErrors."""
    given = [name for name in _FLAGS if getattr(a, f"auth_{name}") is not None]
    if a.auth_response_header:
        given.append("response_header")
    if a.auth_cluster is None:
        if given:
            flags = ", ".join("--auth-" + name.replace("_", "-") for name in given)
            raise argparse.ArgumentTypeError(f"{flags} need --auth-cluster")
        return None
    if a.route != "id":
        raise argparse.ArgumentTypeError("--auth-cluster needs a route to a cluster (id)")
    auth = AuthRequest(cluster_id=a.auth_cluster, response_headers=a.auth_response_header or [])
    for name in _FLAGS:
        if getattr(a, f"auth_{name}") is not None:
            setattr(auth, name, getattr(a, f"auth_{name}"))
    problem = auth_request_problem(auth)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"auth_request: {problem}")
    return auth
