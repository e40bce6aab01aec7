"""nginx's regex locations (`location ~* "^<path>"`) as the dataplane's REGEX path rules.

ingress-nginx writes a regex path as a case-insensitive regex anchored at the start only, and
tries the regex locations of a server by descending path length (ties: the greater path in
byte order first). The dataplane matches a REGEX rule against the whole normalised path and
tries the REGEX rules of a host in the order of their text. So a path becomes
`(?i)(?#<order>)(?:<path>)(?s:.*)`: `(?s:.*)` takes whatever follows the start-anchored match
and adds no capture group (`$1`.. stay the path's own groups); a path with a `|` outside any
group gets `(?s:.*?)(?:^<path>)` instead, as `^` binds to its first branch only in nginx; the
comment `(?#<order>)` (10000 - byte length, then the complemented bytes in hex) makes the
dataplane's order nginx's (the dataplane drops comments before compiling). The dataplane
compiles with RE2 (linear time, sozu's syntax: no lookaround, no backreferences); a path RE2
does not take is reported and not served.
"""

from __future__ import annotations

import functools

from ingress_operator.ingress_semantics import PREFIX as PREFIX_TYPE
from ingress_operator.ingress_semantics import SemanticError, path_rules

from dataplane.command.messages import PathRule, PathRuleKind
from dataplane.command.regexes import RegexError, compile_regex

_MAX_PATH = 2048


def _top_level_bar(pattern: str) -> bool:
    """Does the regex have a `|` outside every group (then `^` binds to its first branch)?"""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += (
                2 if pattern.startswith("^]", i + 1) else 1 if pattern.startswith("]", i + 1) else 0
            )
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False


@functools.lru_cache(maxsize=65536)
def regex_rule(path: str) -> PathRule:
    """nginx's `location ~* "^<path>"` as a REGEX rule (see the module docstring);
    SemanticError when it cannot be one."""
    if not path.startswith("/"):
        raise SemanticError(f"use-regex path {path[:64]!r} must start with '/'")
    if len(path) > _MAX_PATH or any(c in path for c in "\x00\r\n"):
        raise SemanticError(f"path {path[:64]!r} contains characters a path cannot hold")
    raw = path.encode()
    order = f"{10000 - len(raw):04d}.{bytes(255 - b for b in raw).hex()}"
    if _top_level_bar(path):
        value = f"(?i)(?#{order})(?s:.*?)(?:^{path})(?s:.*)"
    else:
        value = f"(?i)(?#{order})(?:{path})(?s:.*)"
    error = regex_error(value)
    if error is not None:
        raise SemanticError(f"use-regex path {path[:64]!r} does not compile: {error}")
    return PathRule(kind=PathRuleKind.REGEX, value=value)


def regex_error(pattern: str) -> str | None:
    """Why the dataplane would not compile `pattern` (None: it would)."""
    try:
        compile_regex(pattern)
    except RegexError as error:
        return str(error)
    return None


def shown(rule: PathRule) -> str:
    """A rule as a message shows it: a regex rule as nginx's location (` ~* ^<path>`)."""
    if rule.kind != PathRuleKind.REGEX or "(?:" not in rule.value:
        return rule.value or "/"
    start = rule.value.index("(?:") + 3
    path = rule.value[start : -len(")(?s:.*)")].removeprefix("^")
    return f" ~* ^{path}"


def regex_rules(path_type: str, path: str, own: bool) -> tuple[PathRule, ...]:
    """A path's rules on a host whose paths are all regex locations. `own`: the path's
    Ingress asks for regex or a rewrite itself (then it is not split)."""
    if not own:
        path_rules(path_type, path)  # the Ingress API's rules for a plain path, as elsewhere
    path = path or "/"  # ingress-nginx: no path is `/`
    if own or path_type != PREFIX_TYPE or path == "/" or path.endswith("/"):
        return (regex_rule(path),)
    # updateServerLocations: a Prefix path `/p` is `/p/` plus an Exact `/p` location.
    return (regex_rule(path + "/"), regex_rule(path))
