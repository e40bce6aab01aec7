"""`frontend http|https add --cors ...`: a route's CORS policy (docs/cors.md).

`--cors` turns it on with ingress-nginx's defaults; each `--cors-*` flag changes one part and
needs `--cors`. Lists are comma-separated, as in ingress-nginx's annotations.
"""

from __future__ import annotations

import argparse

from dataplane.command.cors_rules import cors_problem
from dataplane.command.messages import CorsPolicy

_LISTS = ("allow_origin", "allow_methods", "allow_headers", "expose_headers")


def add_cors_flags(add: argparse.ArgumentParser) -> None:
    group = add.add_argument_group("CORS (pysozu extension, docs/cors.md)")
    group.add_argument(
        "--cors",
        action="store_true",
        help="answer CORS preflights and add Access-Control-* headers (ingress-nginx defaults)",
    )
    group.add_argument(
        "--cors-allow-origin",
        metavar="ORIGINS",
        help="allowed origins: *, null, scheme://host[:port], scheme://*.host (default *)",
    )
    group.add_argument("--cors-allow-methods", metavar="METHODS", help="e.g. 'GET, POST'")
    group.add_argument("--cors-allow-headers", metavar="HEADERS", help="request headers allowed")
    group.add_argument("--cors-expose-headers", metavar="HEADERS", help="headers scripts may read")
    group.add_argument(
        "--cors-allow-credentials",
        choices=("true", "false"),
        help="send Access-Control-Allow-Credentials: true (default true)",
    )
    group.add_argument("--cors-max-age", type=int, metavar="SECONDS", help="default 1728000")


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cors_policy(a: argparse.Namespace) -> CorsPolicy | None:
    """The policy the flags ask for (None without --cors); ArgumentTypeError when invalid."""
    given = [name for name in _LISTS if getattr(a, f"cors_{name}", None) is not None]
    if a.cors_allow_credentials is not None or a.cors_max_age is not None:
        given.append("allow_credentials/max_age")
    if not a.cors:
        if given:
            raise argparse.ArgumentTypeError("the --cors-* flags need --cors")
        return None
    policy = CorsPolicy()
    if a.cors_allow_origin is not None:
        policy.allow_origins = _split(a.cors_allow_origin)
    if a.cors_allow_methods is not None:
        policy.allow_methods = _split(a.cors_allow_methods)
    if a.cors_allow_headers is not None:
        policy.allow_headers = _split(a.cors_allow_headers)
    if a.cors_expose_headers is not None:
        policy.expose_headers = _split(a.cors_expose_headers)
    if a.cors_allow_credentials is not None:
        policy.allow_credentials = a.cors_allow_credentials == "true"
    if a.cors_max_age is not None:
        policy.max_age = a.cors_max_age
    problem = cors_problem(policy)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return policy
