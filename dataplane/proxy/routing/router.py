"""Per-listener request routing: (host, path, method) -> Route, as sozu 2.1 does it.

The path is the request's normalised path, without query (`request_path.route_path`): no
other spelling of a path reaches a different rule.

Lookup order (sozu's `Router::lookup`): PRE rules (linear, first match) -> the host tree ->
POST rules (linear, first match) -> no route (the loop answers 404).

The tree picks ONE host entry, most specific first: exact host (one dict lookup), then
`*.suffix` (strip the first label, one dict lookup), then regex hostnames, then `*`. Only that
entry's path rules are tried; like sozu's trie there is no fall back to a less specific host
when they all miss (the request goes on to POST). Within a host: EQUALS, then REGEX, then the
longest PREFIX; at each level a rule naming the request's method beats a method-less rule.
Ties are broken by the rule's text, never by insertion order, so the same set of frontends
always routes the same way (sozu's scan is order-dependent here; ours is deliberately not).

Decisions that needed a regex or a linear rule list are memoised per (host, path, method) in
a bounded cache that any change to the router clears.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dataplane.command.messages import PathRuleKind, RequestHttpFrontend, RulePosition
from dataplane.command.regexes import Regex
from dataplane.proxy.routing.route import Route
from dataplane.proxy.routing.rules import HostKind, HostPattern, PathPattern, RouterError

__all__ = ["Route", "Router", "RouterError", "normalize_host"]

_DECISION_CACHE_SIZE = 4096
_RuleKey = tuple[PathRuleKind, str, "str | None"]


class _HostRules:
    """The path rules of one tree host, indexed for EQUALS > REGEX > longest PREFIX."""

    __slots__ = ("catch_all", "equals", "prefixes", "regexes", "rules")

    def __init__(self) -> None:
        # (kind, value, method) -> Route: the identity used for duplicates and removal.
        self.rules: dict[_RuleKey, Route] = {}
        self._reindex()

    def _reindex(self) -> None:
        # Sorted once per change so that select() is a first-match scan with no comparisons.
        def method_order(method: str | None) -> tuple[bool, str]:
            return (method is None, method or "")

        self.equals: dict[str, list[tuple[str | None, Route]]] = {}
        regexes: list[tuple[Regex, str | None, Route]] = []
        prefixes: list[tuple[str, str | None, Route]] = []
        # Rules compare their normalised value (`PathPattern.match`): two configured values
        # may normalise alike, and then their configured text breaks the tie.
        for (kind, _value, method), route in self.rules.items():
            pattern = route.path_pattern
            if kind is PathRuleKind.EQUALS:
                self.equals.setdefault(pattern.match, []).append((method, route))
            elif kind is PathRuleKind.REGEX:
                assert pattern.regex is not None
                regexes.append((pattern.regex, method, route))
            else:
                prefixes.append((pattern.match, method, route))
        for candidates in self.equals.values():
            candidates.sort(key=lambda item: (*method_order(item[0]), item[1].path_pattern.value))
        regexes.sort(key=lambda item: (*method_order(item[1]), item[2].path_pattern.value))
        prefixes.sort(
            key=lambda item: (-len(item[0]), *method_order(item[1]), item[2].path_pattern.value)
        )
        self.regexes = regexes
        self.prefixes = prefixes
        # The common case, one "match everything" rule, skips every comparison.
        catch_all = self.rules.get((PathRuleKind.PREFIX, "", None))
        self.catch_all = catch_all if len(self.rules) == 1 else None

    def add(self, key: _RuleKey, route: Route) -> bool:
        if key in self.rules:
            return False
        self.rules[key] = route
        self._reindex()
        return True

    def remove(self, key: _RuleKey) -> bool:
        if self.rules.pop(key, None) is None:
            return False
        self._reindex()
        return True

    def select(self, path: str, method: str) -> Route | None:
        if self.catch_all is not None:
            return self.catch_all
        for rule_method, route in self.equals.get(path, ()):
            if rule_method is None or rule_method == method:
                return route
        for regex, rule_method, route in self.regexes:
            if (rule_method is None or rule_method == method) and regex.fullmatch(path):
                return route
        for prefix, rule_method, route in self.prefixes:
            if path.startswith(prefix) and (rule_method is None or rule_method == method):
                return route
        return None


@dataclass(frozen=True, slots=True)
class _LinearRule:
    """A PRE or POST rule: host, path and method all checked, first match wins."""

    host: HostPattern
    path: PathPattern
    method: str | None
    route: Route

    @property
    def key(self) -> tuple[HostKind, str, PathRuleKind, str, str | None]:
        return (self.host.kind, self.host.key, self.path.kind, self.path.value, self.method)

    def matches(self, host: str, path: str, method: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and self.host.matches(host)
            and self.path.matches(path)
        )


class Router:
    """The frontends of one HTTP or HTTPS listener."""

    def __init__(self) -> None:
        self._pre: list[_LinearRule] = []
        self._post: list[_LinearRule] = []
        self._exact: dict[str, _HostRules] = {}
        self._wildcard: dict[str, _HostRules] = {}  # keyed by the suffix after "*."
        self._regex_hosts: list[tuple[HostPattern, _HostRules]] = []
        self._any: _HostRules | None = None
        self._decisions: dict[tuple[str, str, str], Route | None] = {}
        self._memoise = False
        self._regex_paths = 0  # TREE rules with a REGEX path, to know when to memoise
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add_frontend(self, front: RequestHttpFrontend) -> Route:
        """Add a frontend (RouterError for a bad or duplicate one); its Route, built."""
        host, path, method = _parse(front)
        route = Route.build(front, host, path)
        if front.position is RulePosition.TREE:
            entry = self._tree_entry(host, create=True)
            assert entry is not None
            added = entry.add((path.kind, path.value, method), route)
        else:
            rules = self._pre if front.position is RulePosition.PRE else self._post
            rule = _LinearRule(host, path, method, route)
            added = all(existing.key != rule.key for existing in rules)
            if added:
                rules.append(rule)
        if not added:
            raise RouterError(f"duplicate frontend {_describe(front)}")
        self._size += 1
        self._regex_paths += front.position is RulePosition.TREE and path.regex is not None
        self._changed()
        return route

    def remove_frontend(self, front: RequestHttpFrontend) -> None:
        host, path, method = _parse(front)
        if front.position is RulePosition.TREE:
            entry = self._tree_entry(host, create=False)
            removed = entry is not None and entry.remove((path.kind, path.value, method))
            if entry is not None and not entry.rules:
                self._drop_tree_entry(host)
        else:
            rules = self._pre if front.position is RulePosition.PRE else self._post
            key = (host.kind, host.key, path.kind, path.value, method)
            kept = [rule for rule in rules if rule.key != key]
            removed = len(kept) < len(rules)
            rules[:] = kept
        if not removed:
            raise RouterError(f"no such frontend {_describe(front)}")
        self._size -= 1
        self._regex_paths -= front.position is RulePosition.TREE and path.regex is not None
        self._changed()

    def lookup(self, host: str, path: str, method: str) -> Route | None:
        """The route for a request; `host` and `path` are already normalised (see
        `normalize_host` and `request_path.route_path`)."""
        if not self._memoise:
            return self._tree_lookup(host, path, method)
        key = (host, path, method)
        try:
            return self._decisions[key]
        except KeyError:
            pass
        route = self._lookup_slow(host, path, method)
        if len(self._decisions) >= _DECISION_CACHE_SIZE:
            self._decisions.clear()  # bounded: hostile traffic can only churn it, not grow it
        self._decisions[key] = route
        return route

    def _lookup_slow(self, host: str, path: str, method: str) -> Route | None:
        for rule in self._pre:
            if rule.matches(host, path, method):
                return rule.route
        route = self._tree_lookup(host, path, method)
        if route is not None:
            return route
        for rule in self._post:
            if rule.matches(host, path, method):
                return rule.route
        return None

    def _tree_lookup(self, host: str, path: str, method: str) -> Route | None:
        entry = self._exact.get(host)
        if entry is None:
            label, dot, suffix = host.partition(".")
            if label and dot:
                entry = self._wildcard.get(suffix)
            if entry is None:
                for pattern, rules in self._regex_hosts:
                    if pattern.matches(host):
                        entry = rules
                        break
                else:
                    entry = self._any
        return entry.select(path, method) if entry is not None else None

    def _tree_entry(self, host: HostPattern, *, create: bool) -> _HostRules | None:
        if host.kind is HostKind.ANY:
            if self._any is None and create:
                self._any = _HostRules()
            return self._any
        if host.kind is HostKind.REGEX:
            for pattern, rules in self._regex_hosts:
                if pattern.key == host.key:
                    return rules
            if not create:
                return None
            entry = _HostRules()
            self._regex_hosts.append((host, entry))
            self._regex_hosts.sort(key=lambda item: item[0].key)  # order-independent
            return entry
        table = self._exact if host.kind is HostKind.EXACT else self._wildcard
        return table.setdefault(host.key, _HostRules()) if create else table.get(host.key)

    def _drop_tree_entry(self, host: HostPattern) -> None:
        if host.kind is HostKind.ANY:
            self._any = None
        elif host.kind is HostKind.REGEX:
            self._regex_hosts = [item for item in self._regex_hosts if item[0].key != host.key]
        else:
            table = self._exact if host.kind is HostKind.EXACT else self._wildcard
            del table[host.key]

    def _changed(self) -> None:
        self._decisions.clear()
        # Memoising only pays off where a lookup would run regexes or scan a rule list.
        self._memoise = bool(self._pre or self._post or self._regex_hosts or self._regex_paths)


def _parse(front: RequestHttpFrontend) -> tuple[HostPattern, PathPattern, str | None]:
    method = front.method or None
    if method is not None and not method.isascii():
        raise RouterError(f"invalid method {method!r}")
    return HostPattern.parse(front.hostname), PathPattern.parse(front.path), method


def _describe(front: RequestHttpFrontend) -> str:
    position = RulePosition(front.position).name
    path = f"{PathRuleKind(front.path.kind).name} {front.path.value!r}"
    return f"{position} {front.method or '*'} {front.hostname} {path}"


# Host header (or :authority): a hostname (`_` allowed, as sozu's tolerant parser does) and an
# optional port, checked by one C-level regex match; bracketed IPv6 literals take a slower path.
_HOST = re.compile(rb"([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)\.?(?::([0-9]{1,5}))?")
_BRACKETED = re.compile(rb"\[([0-9a-f:.]+)\](?::([0-9]{1,5}))?")
_MAX_HOST = 253


def normalize_host(raw: bytes) -> str | None:
    """The routing host for a Host header value: lowercase, no port, no trailing dot.

    None means malformed (the loop answers 400): bad characters, empty labels, a port outside
    1..65535, an overlong name, or a bracketed literal that is not an IPv6 address.
    """
    lowered = raw.lower()
    found = _HOST.fullmatch(lowered)
    if found is not None:
        host, port = found.groups()
        if len(host) > _MAX_HOST:
            return None
    else:
        found = _BRACKETED.fullmatch(lowered)
        if found is None:
            return None
        address, port = found.groups()
        try:
            ipaddress.IPv6Address(address.decode("ascii"))
        except ValueError:
            return None
        host = b"[" + address + b"]"
    if port is not None and not 0 < int(port) <= 65535:
        return None
    return host.decode("ascii")
