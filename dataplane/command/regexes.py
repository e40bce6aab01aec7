"""Regular expressions from configuration (REGEX path rules, `/regex/` hostname segments,
canary header patterns) compiled by RE2 (Google's `google-re2`): matching takes time linear in
the input, so a hostile request path or header cannot stall a worker, whatever the pattern.

RE2's syntax is the one sozu's Rust `regex` crate takes (Perl classes, `(?i)`, non-greedy
repeats, named groups; no backreferences, no lookaround). Python's `(?#...)` comments are
taken too and removed before compiling (pysozu-ingress orders its regex rules with them).
Python's `re` would backtrack: `/(.*)/(.*)/(.*)/x` took 58 s on a 4 KB path that fails it.
`re2` (about 2.7 MB of memory) is loaded by the first pattern compiled, not before.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, cast

_COMMENT = re.compile(r"(?<!\\)\(\?#[^)]*\)")
_OPTIONS: list[Any] = []  # re2.Options, made with the first pattern compiled


class Match(Protocol):
    def groups(self) -> tuple[Any, ...]: ...

    def group(self, index: int = 0, /) -> Any: ...


class Regex(Protocol):
    """What pysozu uses of a compiled pattern (RE2's, shaped as `re`'s)."""

    @property
    def groups(self) -> int: ...

    def fullmatch(self, text: Any, /) -> Match | None: ...

    def search(self, text: Any, /) -> Match | None: ...


class RegexError(ValueError):
    """A pattern RE2 does not take; the message says why."""


def compile_regex(pattern: str | bytes) -> Regex:
    """The compiled pattern (its `fullmatch`/`search` return match objects as `re` does, with
    `groups()` and `group(n)`; `.groups` is its number of groups)."""
    if isinstance(pattern, str):
        pattern = _COMMENT.sub("", pattern)
    import re2

    if not _OPTIONS:
        options = re2.Options()
        options.log_errors = False  # a refused pattern is our error message, not a stderr line
        _OPTIONS.append(options)
    try:
        return cast(Regex, re2.compile(pattern, _OPTIONS[0]))
    except re2.error as error:
        reason = error.args[0] if error.args else error
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise RegexError(text) from None
