"""The path a request is routed on: its target's path, normalised, without query or fragment.

Routes match this path; the backend still gets the bytes the client sent (unless a rewrite
says otherwise). Matching what a backend will resolve, rather than the raw bytes, is what
keeps `/%61dmin`, `/x/../admin`, `/./admin` and `//admin` from slipping past an `/admin` rule.
The rules (nginx's `location` matching is the model; differences are noted):

- the query (from the first `?`) never takes part; a `#` anywhere in the target is refused
  (400): a fragment is never sent by a well-behaved client (nginx cuts the target at it);
- each `%` must start two hex digits (else 400, as nginx). Escapes of unreserved characters
  (RFC 3986: letters, digits, `-._~`) are decoded, the others are kept with uppercase hex
  digits (RFC 3986 6.2.2). An escaped `/` or NUL is refused (400): it cannot be represented
  in a normalised path (nginx decodes `%2F` to a separator; a backend may not);
- runs of slashes are merged (nginx's default `merge_slashes on`; fixed here);
- dot segments are removed (RFC 3986 5.2.4); a `..` that would climb above the root is
  refused (400, as nginx does), since the original bytes go to the backend.

The fast path, a path with none of `%`, `/.`, `//`, `?` and `#`, costs five C-level `in`
checks; `http_head` runs this once per parsed head (heads are cached per connection and per
listener). Rule values (EQUALS, PREFIX) are normalised the same way when a frontend is added.
"""

from __future__ import annotations

import re

from dataplane.proxy.errors import HttpSyntaxError

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = "0123456789abcdefABCDEF"
_FORBIDDEN = frozenset((0x00, 0x2F))  # NUL and "/"

# Every well-formed escape, in any letter case -> what the normalised path holds instead.
_ESCAPES: dict[str, str] = {}
for _high in _HEX:
    for _low in _HEX:
        _byte = int(_high + _low, 16)
        if _byte not in _FORBIDDEN:
            _char = chr(_byte)
            _ESCAPES[f"%{_high}{_low}"] = _char if _char in _UNRESERVED else f"%{_byte:02X}"

_ESCAPE = re.compile(r"%(?:[0-9A-Fa-f]{2})?")
_SLASHES = re.compile(r"//+")


def _escape(match: re.Match[str]) -> str:
    found = match.group()
    replacement = _ESCAPES.get(found)
    if replacement is None:
        if len(found) < 3:
            raise HttpSyntaxError("malformed percent-escape in the path")
        raise HttpSyntaxError(f"encoded {'NUL' if found == '%00' else '/'} in the path")
    return replacement


def _remove_dots(path: str) -> str:
    """RFC 3986 5.2.4 on a path without empty segments but maybe a trailing slash."""
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if not kept:
                raise HttpSyntaxError("the path climbs above the root")
            kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", "..") and kept:
        kept.append("")  # `/a/b/..` is the directory `/a/`
    return "/" + "/".join(kept)


def normalize_path(path: str) -> str:
    """The normalised form of a path without query; HttpSyntaxError (400) when it has none."""
    if "%" in path:
        path = _ESCAPE.sub(_escape, path)
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path and path[:1] == "/":
        path = _remove_dots(path)
    return path


def route_path(target: str) -> str:
    """The path a request target (origin-form path and query, or `*`) is routed on."""
    if (
        "%" not in target
        and "/." not in target
        and "//" not in target
        and "?" not in target
        and "#" not in target
    ):
        return target
    if "#" in target:
        raise HttpSyntaxError("a fragment (#) in the request target")
    return normalize_path(target.partition("?")[0])


def with_query(path: str, target: str) -> str:
    """A rewritten `path` followed by the query of the original `target`, if it had one."""
    query = target.partition("?")[2]
    if not query:
        return path
    return f"{path}{'&' if '?' in path else '?'}{query}"


def rule_path(value: str, prefix: bool) -> tuple[str, str | None]:
    """The form of an EQUALS or PREFIX rule value that normalised paths are compared with,
    and why the rule can never match (None when it can).

    A prefix's last, unfinished segment is not a segment yet: only its escapes are
    normalised, so that PREFIX `/a/.` still means "paths starting with `/a/.`" (`/a/.well-
    known`). A value that cannot be normalised is kept as it is, with the reason.
    """
    if "?" in value or "#" in value:
        return value, "a query or fragment never takes part in routing"
    if not value:
        return value, None
    if value[:1] != "/":
        return value, "paths start with '/'"
    try:
        if not prefix:
            return normalize_path(value), None
        head, _, tail = value.rpartition("/")
        head = normalize_path(head + "/")
        if "%" in tail:
            tail = _ESCAPE.sub(_escape, tail)
        return head + tail, None
    except HttpSyntaxError as error:
        return value, f"no request path matches it ({error.reason})"
