"""Who serves which route: the host + path claims of the Ingresses of our class, for the
admission webhook, read from the controller's own indices (never the API per request).

The rendering settles conflicts by age (render.py): Ingresses are visited oldest first, the
first claim on a route (host, path rule) wins and a later one with another backend loses it,
reported as a `Conflict` Event; an Exact path beats a Prefix path rendering the same rule
(the Ingress API's tie rule), which is no conflict. `ClaimIndex` keeps the winner of each
route the same way, rebuilt when an Ingress or IngressClass event changed the indices
(`version`), so an admission costs a lookup per path of the Ingress judged.

`conflicts(ingress)` names the routes of an Ingress (create or update) that another Ingress
already serves with another backend, and the routes it claims twice with two backends. An
update of an older Ingress that would take a route from a younger one is refused too: it
would silently move a working route (the rendering gives it to the older one).

A route's backend is its cluster, as the rendering names it: `<namespace>/<service>:<port>`,
the Ingress's own redirect cluster for a redirecting one, its refusing cluster for one failing
closed. nginx `app-root` routes (`/` per host) are not judged here: the rendering reports them.
A canary Ingress claims no route (canary.py): it is never a conflict.

An Ingress's own regex paths (use-regex, rewrite-target) claim their regex rule; a plain path
that only becomes a regex because another Ingress makes its host a regex host is judged as
plain here (the rendering reports a clash there as a `Conflict` Event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from ingress_operator.annotations import parse_annotations
from ingress_operator.ingress_semantics import (
    ANY_HOST,
    EXACT,
    SemanticError,
    cluster_id,
    is_ours,
    normalize_host,
    path_rules,
    refused_cluster_id,
)
from ingress_operator.model import BackendRef, Ingress, IngressClass, ObjectKey
from ingress_operator.redirects import redirect_cluster_id
from ingress_operator.regex_paths import regex_rule, shown
from ingress_operator.settings import RenderSettings

from dataplane.command.messages import PathRule, PathRuleKind

RouteKey = tuple[str, PathRuleKind, str]  # host, rule kind, rule value
# The defaultBackend's catch-all: no path rule renders a PREFIX "" (an empty path is "/").
DEFAULT_ROUTE: RouteKey = (ANY_HOST, PathRuleKind.PREFIX, "")


@dataclass(frozen=True, slots=True)
class Claim:
    owner: ObjectKey
    cluster: str
    exact: bool  # from an Exact path: wins a tie against a Prefix path (no conflict)
    where: str  # for messages: "host/path" or "defaultBackend"


def ingress_claims(ingress: Ingress, settings: RenderSettings) -> Iterator[tuple[RouteKey, Claim]]:
    """The routes the rendering would claim for `ingress` (bad hosts and paths claim none)."""
    options = parse_annotations(ingress.annotations, settings.nginx_annotations)
    if options.canary is not None:
        return  # a canary Ingress claims nothing: it joins main routes (canary.py)
    key = ingress.key

    def backend(ref: BackendRef) -> str:
        if options.refused:
            return refused_cluster_id(key)
        if options.redirect is not None:
            return redirect_cluster_id(key)
        return cluster_id(key.namespace, ref.service, ref.port_label)

    for rule in ingress.rules:
        try:
            host = normalize_host(rule.host)
        except SemanticError:
            continue
        for entry in rule.paths:
            if entry.backend is None:
                continue
            try:
                if options.rewrite.regex(entry.path):
                    rules: tuple[PathRule, ...] = (regex_rule(entry.path),)
                else:
                    rules = path_rules(entry.path_type, entry.path)
            except SemanticError:
                continue
            cluster, exact = backend(entry.backend), entry.path_type == EXACT
            for path in rules:
                where = f"{host}{shown(path)}"
                yield (host, path.kind, path.value), Claim(key, cluster, exact, where)
    if ingress.default_backend is not None:
        claim = Claim(key, backend(ingress.default_backend), False, "defaultBackend")
        yield DEFAULT_ROUTE, claim


def _clash(current: Claim, claim: Claim) -> bool:
    """Two claims on one route that the rendering reports as a conflict."""
    return current.cluster != claim.cluster and current.exact == claim.exact


class ClaimIndex:
    """The winning claim of every route, rebuilt when `version()` changes."""

    def __init__(
        self,
        ingresses: Callable[[], Mapping[ObjectKey, Ingress]],
        classes: Callable[[], Mapping[str, IngressClass]],
        version: Callable[[], int],
        settings: RenderSettings,
    ) -> None:
        self._ingresses, self._classes, self._version = ingresses, classes, version
        self.settings = settings
        self._built: int | None = None
        self._winners: dict[RouteKey, Claim] = {}
        self.builds = 0

    def winners(self) -> Mapping[RouteKey, Claim]:
        version = self._version()
        if version != self._built:
            self._winners = self._build()
            self._built = version
            self.builds += 1
        return self._winners

    def _build(self) -> dict[RouteKey, Claim]:
        classes, settings = self._classes(), self.settings
        ours = [i for i in self._ingresses().values() if is_ours(i, classes, settings)]
        ours.sort(key=lambda ingress: ingress.age_key)
        winners: dict[RouteKey, Claim] = {}
        for ingress in ours:
            for route, claim in ingress_claims(ingress, settings):
                current = winners.get(route)
                if current is None or (claim.exact and not current.exact):
                    winners[route] = claim
        return winners

    def conflicts(self, ingress: Ingress) -> list[str]:
        """Why `ingress`'s routes clash with those of other Ingresses (or among themselves)."""
        winners = self.winners()
        own: dict[RouteKey, Claim] = {}
        found: list[str] = []
        reported: set[str] = set()
        for route, claim in ingress_claims(ingress, self.settings):
            mine = own.setdefault(route, claim)
            if mine is not claim and _clash(mine, claim) and claim.where not in reported:
                reported.add(claim.where)
                found.append(f"route {claim.where} is claimed twice in this Ingress, "
                             f"for {mine.cluster} and {claim.cluster}")  # fmt: skip
                continue
            current = winners.get(route)
            if current is None or current.owner == ingress.key or not _clash(current, claim):
                continue
            if claim.where not in reported:
                reported.add(claim.where)
                found.append(f"route {claim.where} is already served by Ingress "
                             f"{current.owner} (backend {current.cluster})")  # fmt: skip
        return found
