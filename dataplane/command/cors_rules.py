"""What a frontend's CORS policy may hold (docs/cors.md): checked when it is configured.

Every value ends up verbatim in response headers, so each is held to a strict syntax here:
methods and header names are HTTP tokens (no CR/LF, no separators), origins are `*`, `null`,
`scheme://host[:port]` or ingress-nginx's one-level wildcard `scheme://*.host[:port]`.
`dataplane.proxy.routing.cors` compiles the policy with the same patterns.
"""

from __future__ import annotations

import re

from dataplane.command.messages import CorsPolicy

TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# scheme://[*.]host[:port], as ingress-nginx's cors-allow-origin (a host is required here).
ORIGIN = re.compile(
    r"([a-z][a-z0-9+.-]*)://(\*\.)?([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(:[0-9]{1,5})?"
)
MAX_AGE = 2**31 - 1


def cors_problem(policy: CorsPolicy) -> str | None:
    """What is wrong with `policy` (a sentence), or None when it can be served."""
    if not policy.allow_origins:
        return "cors.allow_origins must name at least one origin (or *)"
    for origin in policy.allow_origins:
        if origin not in ("*", "null") and not ORIGIN.fullmatch(origin):
            return (
                f"cors origin {origin!r} is not *, null, scheme://host[:port] "
                "or scheme://*.host[:port]"
            )
    if "*" in policy.allow_origins and len(policy.allow_origins) > 1:
        return "cors origin * allows every origin: it cannot be listed with others"
    for field, names in (
        ("allow_methods", policy.allow_methods),
        ("allow_headers", policy.allow_headers),
        ("expose_headers", policy.expose_headers),
    ):
        for name in names:
            if not TOKEN.fullmatch(name):
                return f"cors.{field}: {name!r} is not an HTTP token"
    if not 0 <= policy.max_age <= MAX_AGE:
        return f"cors.max_age {policy.max_age} is not in 0..{MAX_AGE}"
    return None
