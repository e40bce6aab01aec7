"""Which annotations pysozu cannot honour, and what happens to an Ingress that carries them.

Three outcomes, so that nothing under `nginx.ingress.kubernetes.io/` or `pysozu.io/` is ignored
in silence:

- **refused** (fail closed): the annotation restricts who may reach a route (source ranges,
  authentication, client certificates, rate and connection limits, a WAF) and the dataplane
  cannot enforce it exactly. The Ingress's routes are still claimed but answer 503 (a cluster
  with no backend): serving them to everyone would be the opposite of what was asked. This
  holds whether or not `--nginx-annotations` is on.
- **ignored, Warning**: raw nginx configuration (`*-snippet`: never executed) and every other
  nginx key pysozu does not map.
- **no meaning here, Normal**: nginx internals (buffering, buffer sizes, HTTP version to the
  backend) that describe how nginx works, not what the route does.

Restriction is decided by name: the known ingress-nginx keys, plus any key (in either
namespace) whose name says it restricts access, so a key added later fails closed too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

NGINX = "nginx.ingress.kubernetes.io/"
PREFIX = "pysozu.io/"
NOT_ENFORCED = "AnnotationNotEnforced"  # Event reason, and the status error (pysozu.io/...)

# ingress-nginx keys that restrict who reaches a route (docs/user-guide/nginx-configuration).
RESTRICTING_NGINX = frozenset(
    {
        "whitelist-source-range",
        "allowlist-source-range",
        "denylist-source-range",
        "auth-type",
        "auth-secret",
        "auth-secret-type",
        "auth-realm",
        "auth-url",
        "auth-method",
        "auth-signin",
        "auth-signin-redirect-param",
        "auth-response-headers",
        "auth-request-redirect",
        "auth-cache-key",
        "auth-cache-duration",
        "auth-keepalive",
        "auth-keepalive-share-vars",
        "auth-keepalive-requests",
        "auth-keepalive-timeout",
        "auth-always-set-cookie",
        "auth-proxy-set-headers",
        "auth-snippet",
        "auth-tls-secret",
        "auth-tls-verify-client",
        "auth-tls-verify-depth",
        "auth-tls-error-page",
        "auth-tls-pass-certificate-to-upstream",
        "auth-tls-match-cn",
        "satisfy",
        "limit-rps",
        "limit-rpm",
        "limit-connections",
        "limit-burst-multiplier",
        "limit-whitelist",
        "limit-allowlist",
        "limit-rate",
        "limit-rate-after",
        "global-rate-limit",
        "global-rate-limit-window",
        "global-rate-limit-key",
        "global-rate-limit-ignored-cidrs",
        "enable-global-auth",
        "enable-modsecurity",
        "enable-owasp-core-rules",
    }
)
# Restricting only when switched on: "false" asks for nothing.
_OFF_IS_HARMLESS = frozenset(
    {"enable-global-auth", "enable-modsecurity", "enable-owasp-core-rules"}
)
# Names that say "access control" in any namespace (for keys not listed above).
_RESTRICTING_NAME = re.compile(
    r"(source-range|allowlist|whitelist|denylist|blacklist|blocklist|^auth|-auth|"
    r"client-cert|mtls|limit|modsecurity|waf|ip-allow|ip-deny)"
)
RAW_CONFIG = frozenset(
    {
        "configuration-snippet",
        "server-snippet",
        "location-snippet",
        "stream-snippet",
        "auth-snippet",
        "modsecurity-snippet",
    }
)
NO_MEANING = frozenset(
    {
        "proxy-buffering",
        "proxy-buffer-size",
        "proxy-buffers-number",
        "proxy-busy-buffers-size",
        "proxy-max-temp-file-size",
        "proxy-request-buffering",
        "client-body-buffer-size",
        "proxy-http-version",
        "http2-push-preload",
        "enable-rewrite-log",
    }
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell the Ingress's owner: an Event of this type and reason."""

    type: str  # "Warning" or "Normal"
    reason: str
    message: str


@dataclass(slots=True)
class Refusals:
    """What an annotation parser refused: each key in `refused` fails the Ingress closed, with
    a Warning Event naming it; `problems` are reported without refusing."""

    refused: list[str] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def refuse(self, key: str, why: str) -> None:
        self.refused.append(key)
        message = f"annotation {key}: {why}, so the Ingress's routes answer 503"
        self.notices.append(Notice("Warning", NOT_ENFORCED, message))


def restricts(namespace: str, name: str, value: str) -> bool:
    """Does this annotation restrict who may reach the route?"""
    if namespace == NGINX and name in RESTRICTING_NGINX:
        return not (name in _OFF_IS_HARMLESS and value.strip().lower() == "false")
    return bool(_RESTRICTING_NAME.search(name))


def review(
    annotations: Iterable[tuple[str, str]],
    nginx: bool,
    nginx_mapped: frozenset[str],
    pysozu_mapped: frozenset[str],
) -> tuple[list[str], list[Notice]]:
    """(refused annotation keys, notices) for the nginx keys, and pysozu.io keys not mapped.

    `nginx_mapped` holds the nginx names the controller reads (with `nginx` only) and
    `pysozu_mapped` the pysozu.io names it knows; those are parsed (and, when they restrict
    access, enforced) elsewhere."""
    refused: list[str] = []
    notices: list[Notice] = []
    unread: list[str] = []
    for key, value in sorted(annotations):
        if key.startswith(PREFIX):
            name = key.removeprefix(PREFIX)
            if name not in pysozu_mapped and restricts(PREFIX, name, value):
                refused.append(key)
            continue
        if not key.startswith(NGINX):
            continue
        name = key.removeprefix(NGINX)
        if nginx and name in nginx_mapped:
            continue  # read (and, when restricting, enforced) by annotations.py
        if restricts(NGINX, name, value):
            refused.append(key)
        elif name in RAW_CONFIG:
            message = f"annotation {key}: raw nginx configuration is never executed by pysozu"
            notices.append(Notice("Warning", "SnippetIgnored", message))
        elif not nginx:
            unread.append(key)
        elif name in NO_MEANING:
            message = f"annotation {key}: an nginx internal, it has no meaning in pysozu"
            notices.append(Notice("Normal", "NoMeaningHere", message))
        else:
            message = f"annotation {key}: not supported by pysozu, ignored"
            notices.append(Notice("Warning", "Unsupported", message))
    if unread:
        message = f"ignored (--nginx-annotations is off): {', '.join(unread)}"
        notices.append(Notice("Warning", "Unsupported", message))
    for key in refused:
        why = "not enforced by pysozu"
        if key.startswith(NGINX) and not nginx:
            why = "not enforced (--nginx-annotations is off)"
        message = f"annotation {key}: {why}, so the Ingress's routes answer 503"
        notices.append(Notice("Warning", NOT_ENFORCED, message))
    return refused, notices
