"""Canary Ingresses, as ingress-nginx has them: annotations -> a canary rule, and the rule
attached to the main Ingress's routes.

A canary Ingress (`canary: "true"`) claims no route of its own: each of its host + path
routes goes onto the main Ingress's frontend of the same route as that frontend's canary
alternative (a pysozu dataplane extension, docs/canary.md), pointing at the canary's own
cluster. The dataplane then decides per request, as ingress-nginx's balancer does:
`canary-by-header` ("always"/"never", or `-value` exact, or `-pattern` a regex), then
`canary-by-cookie` ("always"/"never"), then `canary-weight` of `canary-weight-total`.

Facts kept from ingress-nginx (annotations.md#canary, annotations/canary, the Lua balancer):
- a canary route without a main route of the same host and path serves nothing (reported);
- one canary per main route: the oldest canary Ingress wins, later ones are reported;
- a canary Ingress's other annotations are ignored (the main Ingress's apply), except the
  load balancing and session affinity ones, which shape the canary's own cluster;
- `canary-by-header-pattern` is ignored when `canary-by-header-value` is set; a total
  weight below 100 is 100 (the balancer's `weightTotal > 100` test).
pysozu adds, to fail closed: a canary Ingress carrying an access restriction pysozu cannot
enforce is not attached, nor is any canary to a main route that fails closed or redirects.
Same keys under `pysozu.io/` (they win over the nginx ones).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingress_operator.annotation_review import NGINX, PREFIX
from ingress_operator.ingress_semantics import SemanticError, normalize_host, path_rules

from dataplane.command.canary_rules import MAX_TEXT, MAX_WEIGHT_TOTAL
from dataplane.command.messages import Canary, PathRuleKind
from dataplane.command.regexes import RegexError, compile_regex

if TYPE_CHECKING:
    from ingress_operator.annotations import Options
    from ingress_operator.model import BackendRef, Ingress
    from ingress_operator.render import _Renderer

CANARY_NAMES = frozenset(
    {
        "canary",
        "canary-weight",
        "canary-weight-total",
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-header-pattern",
        "canary-by-cookie",
    }
)
# What a canary Ingress keeps of its own (ingress-nginx: load-balance, upstream-hash-by and
# session affinity); every other mapped key is reported as ignored.
_KEPT_NGINX = frozenset({"load-balance", "affinity", "affinity-mode"})
_KEPT_PYSOZU = frozenset(
    {"load-balancing", "load-metric", "sticky-sessions", "session-cookie-name", "backend-weights"}
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_TRUE = ("1", "t", "true")  # Go's strconv.ParseBool, as ingress-nginx reads booleans
_FALSE = ("0", "f", "false")
REASON = "Canary"  # the Event reason of canary problems


@dataclass(frozen=True, slots=True)
class CanaryRule:
    """The rule of a canary Ingress (hashable: it is part of an interned frontend's key)."""

    header: str | None = None
    header_value: str | None = None
    header_pattern: str | None = None
    cookie: str | None = None
    weight: int = 0
    weight_total: int = 100

    def message(self, cluster_id: str) -> Canary:
        return Canary(cluster_id=cluster_id, **dataclasses.asdict(self))


def parse_canary(
    annotations: Mapping[str, str], nginx: bool, problems: list[str]
) -> CanaryRule | None:
    """The canary rule of an Ingress (None: not a canary); bad values go to `problems`."""

    def get(name: str) -> tuple[str, str] | None:
        for prefix in (PREFIX, NGINX) if nginx else (PREFIX,):
            if (value := annotations.get(prefix + name)) is not None:
                return prefix + name, value
        return None

    found = {name: got for name in CANARY_NAMES if (got := get(name)) is not None}
    if not found:
        return None
    enabled = False
    if "canary" in found:
        key, flag = found["canary"]
        enabled = flag.strip().lower() in _TRUE
        if not enabled and flag.strip().lower() not in _FALSE:
            problems.append(f"annotation {key}: {flag!r} is not true or false")
    if not enabled:
        others = sorted(key for name, (key, _) in found.items() if name != "canary")
        if others:
            problems.append(f'annotations {", ".join(others)}: ignored without canary: "true"')
        return None
    header = _text(found.get("canary-by-header"), _TOKEN.fullmatch, "a header name", problems)
    value = _text(found.get("canary-by-header-value"), _value_ok, "a header value", problems)
    pattern = _pattern(found.get("canary-by-header-pattern"), problems)
    given: tuple[tuple[str, str | None], ...] = (
        ("canary-by-header-value", value),
        ("canary-by-header-pattern", pattern),
    )
    for name, text in given:
        if text is not None and header is None:
            problems.append(f"annotation {found[name][0]}: has no effect without canary-by-header")
    if value is not None and pattern is not None:
        problems.append(
            f"annotation {found['canary-by-header-pattern'][0]}: ignored, "
            "canary-by-header-value is set"
        )
        pattern = None
    cookie = _text(found.get("canary-by-cookie"), _TOKEN.fullmatch, "a cookie name", problems)
    total = _number(found.get("canary-weight-total"), 100, problems)
    if total < 100:
        key = found["canary-weight-total"][0]
        problems.append(f"annotation {key}: {total} is below 100; ingress-nginx uses 100")
        total = 100
    weight = min(_number(found.get("canary-weight"), 0, problems), total)
    return CanaryRule(
        header=header,
        header_value=value if header else None,
        header_pattern=pattern if header else None,
        cookie=cookie,
        weight=weight,
        weight_total=total,
    )


def _value_ok(text: str) -> bool:
    return 0 < len(text) <= MAX_TEXT and not any(c in text for c in "\r\n\0")


def _text(
    given: tuple[str, str] | None, ok: Callable[[str], object], what: str, problems: list[str]
) -> str | None:
    if given is None:
        return None
    key, value = given
    if ok(value):
        return value
    problems.append(f"annotation {key}: {value[:64]!r} is not {what}; ignored")
    return None


def _pattern(given: tuple[str, str] | None, problems: list[str]) -> str | None:
    if given is None:
        return None
    key, value = given
    try:
        compile_regex(value)
    except RegexError as error:
        problems.append(f"annotation {key}: {value[:64]!r} does not compile ({error}); ignored")
        return None
    if not _value_ok(value):
        problems.append(f"annotation {key}: a pattern is 1..{MAX_TEXT} characters; ignored")
        return None
    return value


def _number(given: tuple[str, str] | None, default: int, problems: list[str]) -> int:
    if given is None:
        return default
    key, value = given
    text = value.strip()
    if text.isdigit() and int(text) <= MAX_WEIGHT_TOTAL:
        return int(text)
    problems.append(f"annotation {key}: {value!r} is not a whole number in 0..{MAX_WEIGHT_TOTAL}")
    return default


def ignored_keys(annotations: Mapping[str, str], nginx: bool, mapped: frozenset[str]) -> list[str]:
    """The keys of a canary Ingress that would work on a main one but are ignored here."""
    found = []
    for key in sorted(annotations):
        if key.startswith(PREFIX):
            name, kept = key.removeprefix(PREFIX), _KEPT_PYSOZU
        elif nginx and key.startswith(NGINX):
            name, kept = key.removeprefix(NGINX), _KEPT_NGINX
        else:
            continue
        affinity = name.startswith("session-cookie-")  # ingress-nginx keeps them all
        if name in mapped and name not in kept and name not in CANARY_NAMES and not affinity:
            found.append(key)
    return found


# The Options fields a canary's own cluster takes from the canary Ingress (balancing and
# session affinity); those not (yet) in Options are skipped.
_OWN_FIELDS = (
    "load_balancing", "load_metric", "sticky_session", "sticky_name", "sticky_cookie", "weights",
)  # fmt: skip


def cluster_options(canary: Options, main: Options) -> Options:
    """The canary cluster's options: the main's, with the canary's balancing and affinity."""
    known = {f.name for f in dataclasses.fields(canary)}
    own = {name: getattr(canary, name) for name in _OWN_FIELDS if name in known}
    return dataclasses.replace(main, **own)


RouteKey = tuple[str, PathRuleKind, str]


def canary_routes(ingress: Ingress) -> list[tuple[RouteKey, str, BackendRef]]:
    """A canary Ingress's routes: (host, rule kind, rule value), "host/path", backend."""
    found = []
    for rule in ingress.rules:
        try:
            host = normalize_host(rule.host)
        except SemanticError:
            continue  # reported with the rule
        for entry in rule.paths:
            if entry.backend is None:
                continue
            try:
                rules = path_rules(entry.path_type, entry.path)
            except SemanticError:
                continue
            for path in rules:
                where = f"{host}{path.value or '/'}"
                found.append(((host, path.kind, path.value), where, entry.backend))
    return found


def attach_canaries(renderer: _Renderer, canaries: list[tuple[Ingress, Options]]) -> None:
    """Put each canary Ingress's routes (oldest Ingress first) on the main routes."""
    from ingress_operator.annotations import NGINX_MAPPED, PYSOZU_MAPPED  # (a cycle)

    nginx = renderer.settings.nginx_annotations
    for ingress, options in canaries:
        rule = options.canary
        assert rule is not None
        if options.refused:
            message = "not served: it asks for access restrictions pysozu cannot enforce"
            renderer.problem(ingress, REASON, message)
            continue
        mapped = NGINX_MAPPED | PYSOZU_MAPPED
        if ignored := ignored_keys(ingress.annotations, nginx, mapped):
            listed = ", ".join(ignored)
            message = f"ignored on a canary Ingress (the main Ingress's apply): {listed}"
            renderer.problem(ingress, REASON, message)
        if ingress.default_backend is not None or ingress.tls:
            message = "defaultBackend and tls of a canary Ingress are ignored (the main's serve)"
            renderer.problem(ingress, REASON, message)
        for key, where, ref in canary_routes(ingress):
            route = renderer.routes.get(key)
            if route is None:
                message = f"route {where}: no main Ingress serves it, the canary serves nothing"
            elif route.cluster not in renderer.clusters:
                message = (
                    f"route {where}: main Ingress {route.owner.key} does not forward it "
                    "(a redirect, or it fails closed): no canary"
                )
            elif route.canary is not None and route.canary[2] != ingress.key:
                message = f"route {where}: older canary Ingress {route.canary[2]} has it"
            else:
                cid = renderer.add_cluster(ingress, ref, cluster_options(options, route.options))
                if cid != route.cluster:
                    route.canary = (cid, rule, ingress.key)
                    continue
                message = f"route {where}: the canary's backend is the main's: nothing to split"
            renderer.problem(ingress, REASON, message)
