"""What a TLS passthrough frontend may hold (a pysozu extension, docs/tls-passthrough.md).

A passthrough frontend (`passthrough = true` on an HTTPS frontend) sends the connections whose
ClientHello names its hostname, still encrypted, to its cluster's backends: no HTTP is seen,
so nothing HTTP applies. `passthrough_problem` says what makes one unusable (or None); the
state checks (`state_rules.check_http_frontend`) turn it into a StateError, and the TOML
reader and the CLI report it before anything is sent.
"""

from __future__ import annotations

import re

from dataplane.command.messages import PathRuleKind, RequestHttpFrontend, RulePosition

# Exact names and one leading wildcard label, as SNI matching allows (no regex hostnames).
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?", re.IGNORECASE)

# Fields an HTTP route uses that mean nothing for raw TLS bytes: refused, never ignored.
_HTTP_ONLY = (
    "method",
    "redirect",
    "required_auth",
    "redirect_scheme",
    "redirect_template",
    "rewrite_host",
    "rewrite_path",
    "rewrite_port",
    "hsts",
    "max_body_size",
    "canary",
    "connection_limit",
    "custom_errors",
)
_HTTP_ONLY_LISTS = ("headers", "allowed_sources", "denied_sources", "rate_limits")


def passthrough_problem(front: RequestHttpFrontend) -> str | None:
    """What makes the passthrough frontend `front` unusable, or None (also for non-passthrough
    frontends)."""
    if not front.passthrough:
        return None
    if front.cluster_id is None:
        return "a passthrough frontend needs a cluster_id"
    if not _HOSTNAME.fullmatch(front.hostname):
        return f"hostname {front.hostname!r}: passthrough matches exact names or *.domain"
    if front.path.kind != PathRuleKind.PREFIX or front.path.value not in ("", "/"):
        return "passthrough routes by TLS server name only: no path rule"
    if front.position != RulePosition.TREE:
        return "passthrough frontends have no position (they are matched by server name)"
    for name in _HTTP_ONLY:
        if getattr(front, name) is not None:
            return f"{name} is HTTP and means nothing on a passthrough frontend"
    for name in _HTTP_ONLY_LISTS:
        if getattr(front, name):
            return f"{name} is HTTP and means nothing on a passthrough frontend"
    return None
