"""The pieces a route is made of: hostname patterns, path rules and rewrite templates.

Each is parsed once, when a frontend is added, into a small immutable matcher; parsing is where
configuration errors surface (`RouterError`), so the request path never meets a bad pattern.
Semantics follow sozu 2.1 (`lib/src/router/mod.rs`):

- hostnames: `*` (any host), `*.example.com` (exactly one non-empty leftmost label), regex
  segments between slashes (`/cdn[0-9]+/.example.com`, anchored on the whole host), or exact
  (IDNA to ASCII, lowercased);
- paths: PREFIX (`""` matches everything), EQUALS, REGEX, all compared with the request's
  normalised path without its query (`request_path`); PREFIX and EQUALS values are normalised
  the same way. A REGEX must match the whole path, as sozu's documentation states (sozu 2.1's
  code actually runs an unanchored search, which lets an `/api` rule catch `/x/api`: we
  follow the documented, safer behaviour);
- rewrite templates: literal text with `$HOST[n]` / `$PATH[n]` captures. Index 0 is the whole
  host or path, then the wildcard label or regex groups (host), the prefix tail or regex groups
  (path). A template naming a capture the rule cannot produce is rejected.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from dataplane.command.messages import PathRule, PathRuleKind
from dataplane.command.regexes import Regex, RegexError, compile_regex
from dataplane.proxy.http1.request_path import rule_path


class RouterError(Exception):
    """A frontend that cannot be added or removed; the message names the offending value."""


class HostKind(enum.IntEnum):
    EXACT = 0
    WILDCARD = 1
    REGEX = 2
    ANY = 3


# One DNS label of a configured hostname. `_` is accepted because real deployments use it and
# sozu's tolerant parser accepts it in Host headers.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_MAX_HOST_LENGTH = 253


def _to_ascii_hostname(text: str) -> str:
    """Lowercase and IDNA-encode a literal hostname, or raise RouterError."""
    host = text.lower().removesuffix(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise RouterError(f"invalid hostname {text!r}: not IDNA-encodable") from None
    labels = host.split(".")
    if len(host) > _MAX_HOST_LENGTH or not all(
        len(label) <= 63 and _LABEL.fullmatch(label) for label in labels
    ):
        raise RouterError(f"invalid hostname {text!r}")
    return host


@dataclass(frozen=True, slots=True)
class HostPattern:
    """A parsed hostname rule. `key` is what the router indexes it by (host, suffix, regex)."""

    kind: HostKind
    key: str
    regex: Regex | None = None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        if text == "*":
            return cls(HostKind.ANY, "*")
        if "/" in text:
            return cls(HostKind.REGEX, text, _compile_host_regex(text))
        if text.startswith("*."):
            return cls(HostKind.WILDCARD, _to_ascii_hostname(text[2:]))
        if "*" in text:
            raise RouterError(f"invalid hostname {text!r}: '*' is only allowed as '*.domain'")
        return cls(HostKind.EXACT, _to_ascii_hostname(text))

    def matches(self, host: str) -> bool:
        if self.kind is HostKind.EXACT:
            return host == self.key
        if self.kind is HostKind.WILDCARD:
            label, dot, suffix = host.partition(".")
            return bool(label) and bool(dot) and suffix == self.key
        if self.kind is HostKind.REGEX:
            assert self.regex is not None
            return self.regex.fullmatch(host) is not None
        return True

    @property
    def capture_count(self) -> int:
        """How many `$HOST[n]` captures a match yields (index 0 is the whole host)."""
        if self.kind is HostKind.WILDCARD:
            return 2
        if self.kind is HostKind.REGEX:
            assert self.regex is not None
            return self.regex.groups + 1
        return 1

    def captures(self, host: str) -> list[str]:
        if self.kind is HostKind.WILDCARD:
            return [host, host.partition(".")[0]]
        if self.kind is HostKind.REGEX:
            assert self.regex is not None
            found = self.regex.fullmatch(host)
            groups = [g or "" for g in found.groups()] if found else []
            return [host, *groups]
        return [host]


def _compile_host_regex(text: str) -> Regex:
    """`/re/.example.com`: slash-delimited regex segments and literal labels, joined by dots."""
    parts: list[str] = []
    index = 0
    while True:
        if text.startswith("/", index):
            end = text.find("/", index + 1)
            if end < 0:
                raise RouterError(f"invalid hostname {text!r}: unterminated /regex/")
            parts.append(f"(?:{text[index + 1 : end]})")
            index = end + 1
        else:
            end = text.find(".", index)
            end = len(text) if end < 0 else end
            label = text[index:end]
            if not label or "/" in label or "*" in label:
                raise RouterError(f"invalid hostname {text!r}: bad label {label!r}")
            parts.append(re.escape(_to_ascii_hostname(label)))
            index = end
        if index == len(text):
            break
        if text[index] != ".":
            raise RouterError(f"invalid hostname {text!r}: expected '.' after a /regex/")
        index += 1
    try:
        return compile_regex(r"\.".join(parts))
    except RegexError as error:
        raise RouterError(f"invalid hostname regex {text!r}: {error}") from None


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A path rule. `value` is the configured text (the rule's identity); `match` is what
    normalised request paths are compared with (`request_path.rule_path`); `problem` says
    why the rule can never match, when it cannot."""

    kind: PathRuleKind
    value: str
    regex: Regex | None = None
    match: str = ""
    problem: str | None = None

    @classmethod
    def parse(cls, rule: PathRule) -> PathPattern:
        kind = PathRuleKind(rule.kind)
        if kind is not PathRuleKind.REGEX:
            match, problem = rule_path(rule.value, kind is PathRuleKind.PREFIX)
            return cls(kind, rule.value, None, match, problem)
        try:
            return cls(kind, rule.value, compile_regex(rule.value), rule.value)
        except RegexError as error:
            raise RouterError(f"invalid path regex {rule.value!r}: {error}") from None

    def matches(self, path: str) -> bool:
        if self.kind is PathRuleKind.PREFIX:
            return path.startswith(self.match)
        if self.kind is PathRuleKind.EQUALS:
            return path == self.match
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None

    @property
    def capture_count(self) -> int:
        if self.kind is PathRuleKind.PREFIX:
            return 2
        if self.kind is PathRuleKind.REGEX:
            assert self.regex is not None
            return self.regex.groups + 1
        return 1

    def captures(self, path: str) -> list[str]:
        if self.kind is PathRuleKind.PREFIX:
            return [path, path[len(self.match) :]]
        if self.kind is PathRuleKind.REGEX:
            assert self.regex is not None
            found = self.regex.fullmatch(path)
            groups = [g or "" for g in found.groups()] if found else []
            return [path, *groups]
        return [path]


_TEMPLATE_PART = re.compile(r"\$(HOST|PATH)\[([0-9]{1,4})\]|([^$]+)|(\$)")


@dataclass(frozen=True, slots=True)
class RewriteTemplate:
    """A host or path rewrite: literal strings and ("HOST"|"PATH", index) references."""

    parts: tuple[str | tuple[str, int], ...]

    @classmethod
    def parse(cls, template: str, host_caps: int, path_caps: int) -> RewriteTemplate:
        parts: list[str | tuple[str, int]] = []
        for found in _TEMPLATE_PART.finditer(template):
            source, index, literal, stray = found.groups()
            if stray:
                raise RouterError(f"invalid rewrite {template!r}: '$' must start $HOST[n]/$PATH[n]")
            if literal:
                parts.append(literal)
                continue
            limit = host_caps if source == "HOST" else path_caps
            if int(index) >= limit:
                raise RouterError(
                    f"invalid rewrite {template!r}: ${source}[{index}] does not exist "
                    f"(this rule captures {limit})"
                )
            parts.append((source, int(index)))
        return cls(tuple(parts))

    @property
    def uses_host(self) -> bool:
        return any(isinstance(p, tuple) and p[0] == "HOST" for p in self.parts)

    @property
    def uses_path(self) -> bool:
        return any(isinstance(p, tuple) and p[0] == "PATH" for p in self.parts)

    def render(self, host_captures: list[str], path_captures: list[str]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                captures = host_captures if part[0] == "HOST" else path_captures
                out.append(captures[part[1]] if part[1] < len(captures) else "")
        return "".join(out)
