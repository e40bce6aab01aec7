"""The Ingress API's rules, as pure functions: which Ingresses are ours, hosts, and paths.

Path types map onto the dataplane's rules (EQUALS / PREFIX / REGEX, where an equal match wins
immediately and otherwise the longest prefix wins):

- `Exact /p`      -> EQUALS `/p` (case-sensitive, verbatim: `/foo/` never matches `/foo`).
- `Prefix /p`     -> EQUALS `/p` plus PREFIX `/p/`, after dropping trailing slashes, so `/foo`
                     matches `/foo`, `/foo/` and `/foo/bar` but not `/foobar` (element-wise);
                     `Prefix /` -> PREFIX `/`.
- `ImplementationSpecific /p` -> PREFIX `/p`: the dataplane's own string prefix (documented).

Longest match wins because a request equal to `/p` is caught by the EQUALS rule (always the
longest possible match) and deeper requests by the longest PREFIX `/p/`. An Exact and a Prefix
rule on the same path render the same EQUALS rule: the Exact one wins the tie (see render.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from ingress_operator.model import Ingress, IngressClass, ObjectKey
from ingress_operator.settings import RenderSettings

from dataplane.command.messages import PathRule, PathRuleKind

EXACT, PREFIX, IMPLEMENTATION_SPECIFIC = "Exact", "Prefix", "ImplementationSpecific"
ANY_HOST = "*"

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAX_PATH = 2048


class SemanticError(ValueError):
    """An Ingress field that the Ingress API does not allow; the message is for an Event."""


def is_ours(
    ingress: Ingress, classes: Mapping[str, IngressClass], settings: RenderSettings
) -> bool:
    """Class matching: the legacy annotation wins over ingressClassName (as Contour and
    HAProxy Ingress do), then ingressClassName, then the default class or the flag."""

    def our_class(name: str) -> bool:
        found = classes.get(name)
        return found is not None and found.controller == settings.controller_name

    legacy = ingress.legacy_class
    if legacy is not None:
        return legacy == settings.ingress_class or our_class(legacy)
    if ingress.class_name is not None:
        return our_class(ingress.class_name)
    if settings.watch_ingress_without_class:
        return True
    # The admission plugin gives new class-less Ingresses the default class; honour it for the
    # ones that predate it (and for API servers without the plugin).
    defaults = [c for c in classes.values() if c.is_default]
    return len(defaults) == 1 and defaults[0].controller == settings.controller_name


@functools.lru_cache(maxsize=65536)
def normalize_host(host: str | None) -> str:
    """Lowercase a rule host; None -> "*" (any host). Single-label wildcards only."""
    if host is None or host == "":
        return ANY_HOST
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise SemanticError(f"wildcard host {host!r} needs at least two labels after '*.'")
    if not labels or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise SemanticError(f"host {host!r} is not a DNS name or a single-label wildcard")
    return name


@functools.lru_cache(maxsize=65536)
def path_rules(path_type: str, path: str) -> tuple[PathRule, ...]:
    """The dataplane rules that together match exactly what the Ingress path matches."""
    if len(path) > _MAX_PATH or any(c in path for c in "\x00\r\n\t ?#"):
        raise SemanticError(f"path {path[:64]!r} contains characters a path cannot hold")
    if path_type == IMPLEMENTATION_SPECIFIC:
        return (PathRule(kind=PathRuleKind.PREFIX, value=path or "/"),)
    if path_type not in (EXACT, PREFIX):
        raise SemanticError(
            f"pathType {path_type!r} is not Exact, Prefix or ImplementationSpecific"
        )
    if not path.startswith("/"):
        raise SemanticError(f"{path_type} path {path!r} must start with '/'")
    if path_type == EXACT:
        return (PathRule(kind=PathRuleKind.EQUALS, value=path),)
    trimmed = path.rstrip("/")
    if not trimmed:
        return (PathRule(kind=PathRuleKind.PREFIX, value="/"),)
    return (
        PathRule(kind=PathRuleKind.EQUALS, value=trimmed),
        PathRule(kind=PathRuleKind.PREFIX, value=trimmed + "/"),
    )


def cluster_id(namespace: str, service: str, port: str) -> str:
    """Readable and deterministic: `<namespace>/<service>:<port as the Ingress names it>`."""
    return f"{namespace}/{service}:{port}"


def refused_cluster_id(ingress: ObjectKey) -> str:
    """The backendless cluster of a failing-closed Ingress: `<namespace>/<ingress>:-refused`.
    A Service port name never starts with "-", so no route to a Service shares it."""
    return f"{ingress.namespace}/{ingress.name}:-refused"


_CLUSTER_ID = re.compile(r"^[a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9.]*:[-a-z0-9]+$")


def is_ingress_cluster_id(value: str) -> bool:
    """True for ids `cluster_id` makes: the clusters this controller owns in the dataplane."""
    return bool(_CLUSTER_ID.match(value))
