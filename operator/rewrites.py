"""ingress-nginx's `use-regex`, `rewrite-target`, `x-forwarded-prefix` and `server-alias`.

Read as `pysozu.io/<name>`, and with `--nginx-annotations` as `nginx.ingress.kubernetes.io/
<name>` (ours win). What ingress-nginx does (nginx.tmpl, controller/location.go) and how the
dataplane is asked for the same:

- A path of an Ingress with `use-regex: "true"`, or with a `rewrite-target` other than the
  path itself, is a regex location `~* "^<path>"`: case-insensitive, anchored at the start
  only. When any path of a host is one, every path of that host (every Ingress, every path
  type) is a regex location too; a Prefix path of an Ingress without either annotation also
  keeps its extra `<path>/` location (`updateServerLocations`). nginx tries regex locations
  in order of descending path length (ties: the greater path in byte order first).
  Here: REGEX rules, regex_paths.py.
- `rewrite-target` replaces the whole URI with the target (nginx `rewrite "(?i)<path>"
  <target> break;`); `$1`..`$9` are the path's capture groups (`$PATH[n]`, a group the path
  does not have is empty); the query string is kept (the dataplane appends it). nginx
  variables (`$host`..), `${n}` and targets that are URLs (nginx answers a redirect) are
  reported and not rewritten.
- `x-forwarded-prefix` sets the request header `X-Forwarded-Prefix` on the paths that are
  rewritten, and only there (nginx sets it next to the `rewrite`); without a rewrite it is
  reported. Capture groups in its value are not supported (reported, not set).
- `server-alias` (comma separated): extra names of the rule hosts' servers, serving every
  route of the host (every Ingress's), with the host's certificate when it covers the alias.
  The oldest Ingress that sets aliases on a host wins; an alias that is the host of some rule
  (or another host's alias) is not added, and reported. DNS names and `*.` wildcards only;
  nginx's regex and trailing-`*` names are reported.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ingress_operator.ingress_semantics import SemanticError, normalize_host
from ingress_operator.model import Ingress

from dataplane.command.messages import Header, HeaderPosition, PathRule
from dataplane.command.regexes import compile_regex

NAMES = frozenset({"use-regex", "rewrite-target", "x-forwarded-prefix", "server-alias"})
PREFIX_HEADER = "X-Forwarded-Prefix"
_MAX_ALIASES = 64
_TRUE, _FALSE = (
    frozenset({"1", "t", "T", "TRUE", "true", "True"}),
    frozenset({"0", "f", "F", "FALSE", "false", "False"}),
)  # Go's strconv.ParseBool, as ingress-nginx reads booleans
# ingress-nginx's RegexPathWithCapture: what rewrite-target and x-forwarded-prefix may hold.
_TARGET = re.compile(r"^/?[-._~a-zA-Z0-9/:$]*$")
_CAPTURE = re.compile(r"\$([1-9])")

Find = Callable[[str], "tuple[str, str] | None"]  # name -> (key, value), ours first


@dataclass(frozen=True, slots=True)
class Rewritten:
    """What a rewritten route asks of the dataplane: its path template, and its
    X-Forwarded-Prefix header."""

    template: str  # `rewrite_path`, e.g. "/$PATH[2]"
    prefix: str | None = None

    @property
    def headers(self) -> list[Header]:
        if not self.prefix:
            return []
        return [Header(position=HeaderPosition.REQUEST, key=PREFIX_HEADER, val=self.prefix)]


@dataclass(frozen=True, slots=True)
class Rewrite:
    use_regex: bool = False
    target: str | None = None  # as written, nginx syntax
    forwarded_prefix: str | None = None
    aliases: tuple[str, ...] = ()  # normalised hosts

    def rewrites(self, path: str) -> bool:
        """ingress-nginx's `needsRewrite`: a target, other than the path itself."""
        return self.target is not None and self.target != path

    def regex(self, path: str) -> bool:
        """Is this path of the Ingress a regex location of its own?"""
        return self.use_regex or self.rewrites(path)

    def rewritten(self, path: str, rule: PathRule) -> Rewritten | None:
        """The rewrite of the route rendered as `rule` from `path` (None: none)."""
        if self.target is None or not self.rewrites(path):
            return None
        groups = _groups(rule.value)
        template = _CAPTURE.sub(
            lambda m: f"$PATH[{m[1]}]" if int(m[1]) <= groups else "", self.target
        )
        return Rewritten(template or "/", self.forwarded_prefix)


@functools.lru_cache(maxsize=65536)
def _groups(pattern: str) -> int:
    return int(compile_regex(pattern).groups)


def parse_rewrite(find: Find, problems: list[str]) -> Rewrite:
    use_regex = False
    if (found := find("use-regex")) is not None:
        key, value = found
        if value.strip() in _TRUE:
            use_regex = True
        elif value.strip() not in _FALSE:
            problems.append(f"annotation {key}: {value!r} is not true or false")
    target = _target(find("rewrite-target"), problems)
    prefix = _prefix(find("x-forwarded-prefix"), target is not None, problems)
    aliases: tuple[str, ...] = ()
    if (found := find("server-alias")) is not None:
        aliases = _aliases(*found, problems)
    return Rewrite(use_regex, target, prefix, aliases)


def _target(found: tuple[str, str] | None, problems: list[str]) -> str | None:
    if found is None or not found[1]:
        return None
    key, value = found
    if not _TARGET.match(value):
        problems.append(
            f"annotation {key}: {value!r} holds characters ingress-nginx refuses "
            "(letters, digits, -._~/:$ only); not rewritten"
        )
    elif value.lower().startswith(("http:", "https:")):
        problems.append(f"annotation {key}: a URL target (an nginx redirect) is not supported")
    elif "$" in _CAPTURE.sub("", value):
        problems.append(
            f"annotation {key}: only $1..$9 capture groups are supported (no nginx variables); "
            "not rewritten"
        )
    else:
        return value
    return None


def _prefix(found: tuple[str, str] | None, rewrites: bool, problems: list[str]) -> str | None:
    if found is None or not found[1]:
        return None  # ingress-nginx: an empty value sets no header
    key, value = found
    if not _TARGET.match(value) or "$" in value:
        problems.append(
            f"annotation {key}: {value!r} is not a literal path (letters, digits, -._~/: only; "
            "capture groups are not supported); not set"
        )
    elif not rewrites:
        problems.append(
            f"annotation {key}: has no effect without rewrite-target (ingress-nginx sets the "
            "header only where it rewrites)"
        )
    else:
        return value
    return None


def _aliases(key: str, value: str, problems: list[str]) -> tuple[str, ...]:
    aliases: list[str] = []
    for name in filter(None, (part.strip() for part in value.split(","))):
        try:
            host = normalize_host(name)
        except SemanticError:
            problems.append(
                f"annotation {key}: {name[:64]!r} is not a DNS name or a *. wildcard "
                "(nginx regex and trailing-* names are not supported); not added"
            )
            continue
        if host == "*":
            continue
        if host not in aliases:
            aliases.append(host)
    if len(aliases) > _MAX_ALIASES:
        problems.append(f"annotation {key}: only the first {_MAX_ALIASES} aliases are added")
    return tuple(sorted(aliases[:_MAX_ALIASES]))


@dataclass(slots=True)
class Hosts:
    """What the whole set of Ingresses says about each host, gathered before any route is
    claimed: which hosts are regex hosts, and the server aliases (oldest Ingress first)."""

    regex: set[str] = field(default_factory=set)
    rule_hosts: dict[str, Ingress] = field(default_factory=dict)  # host -> oldest Ingress
    claims: list[tuple[str, Ingress, tuple[str, ...]]] = field(default_factory=list)

    def scan(self, ingress: Ingress, rewrite: Rewrite) -> None:
        for rule in ingress.rules:
            try:
                host = normalize_host(rule.host)
            except SemanticError:
                continue  # reported with the rule
            self.rule_hosts.setdefault(host, ingress)
            if any(rewrite.regex(entry.path) for entry in rule.paths):
                self.regex.add(host)
            if rewrite.aliases:
                self.claims.append((host, ingress, rewrite.aliases))

    def aliases(self, report: Callable[[Ingress, str], None]) -> list[tuple[str, str]]:
        """(host, alias) pairs to serve, in order; conflicts reported (ingress-nginx keeps
        the first Ingress's aliases of a host and drops an alias that is a server itself)."""
        setter: dict[str, Ingress] = {}
        taken: dict[str, str] = {}  # alias -> the host it names
        pairs = []
        for host, ingress, aliases in self.claims:
            first = setter.setdefault(host, ingress)
            if first is not ingress:
                report(
                    ingress,
                    f"server-alias: host {host} has the aliases of older Ingress "
                    f"{first.key}; these are not added",
                )
                continue
            for alias in aliases:
                owner = self.rule_hosts.get(alias)
                if alias == host or taken.get(alias) == host:
                    continue
                if owner is not None:
                    report(
                        ingress,
                        f"server-alias {alias}: it is a host of Ingress "
                        f"{owner.key}'s rules, which serve it; not an alias of {host}",
                    )
                elif alias in taken:
                    report(
                        ingress,
                        f"server-alias {alias}: already an alias of {taken[alias]}; "
                        f"not an alias of {host}",
                    )
                else:
                    taken[alias] = host
                    pairs.append((host, alias))
        return pairs
