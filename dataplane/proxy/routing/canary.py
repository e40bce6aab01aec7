"""A frontend's canary alternative, compiled once: which cluster serves this request.

A pysozu extension (docs/canary.md) made for ingress-nginx's canary Ingresses, with the
decision of its Lua balancer (`route_to_alternative_balancer`), in this order:

1. `header`: when the request carries it (its first occurrence), with `header_value` the
   canary serves an exact match; with `header_pattern` a regex found anywhere in the value
   (nginx's `ngx.re.match`, unanchored); with neither, "always" sends to the canary and
   "never" to the main cluster. Any other value decides nothing: the next rule does.
2. `cookie`: "always" or "never" (the first cookie of that name, named case-insensitively as
   nginx's `$cookie_` does); any other value decides nothing.
3. `weight`: a fresh random draw per request: the canary serves `weight` in `weight_total`.

`CanaryRoute.build` returns None for a frontend without a canary, so such a route pays one
attribute test per request; a header or cookie is looked for only when a rule names it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.command.messages import Canary
from dataplane.command.regexes import compile_regex

if TYPE_CHECKING:
    from dataplane.proxy.http1.head import RequestHead

ALWAYS, NEVER = b"always", b"never"


def _header_finder(name: str) -> re.Pattern[bytes]:
    """Finds `name`'s first value in a head's header block (lines `\\r\\nname:value`)."""
    return re.compile(rb"\r\n" + re.escape(name.encode("ascii")) + rb":[ \t]*([^\r]*)", re.I)


class CanaryRoute:
    """The compiled rule of one frontend's canary (see the module docstring)."""

    __slots__ = (
        "_cookie", "_draw", "_header", "_pattern", "_value", "cluster_id", "total", "weight",
    )  # fmt: skip

    def __init__(self, canary: Canary, draw: Callable[[int], int] = random.randrange) -> None:
        self.cluster_id = canary.cluster_id
        self._header = _header_finder(canary.header) if canary.header else None
        value = canary.header_value
        self._value = value.encode("utf-8") if value else None
        pattern = canary.header_pattern
        self._pattern = compile_regex(pattern.encode("utf-8")) if pattern and not value else None
        self._cookie = canary.cookie.lower().encode("ascii") if canary.cookie else None
        self.weight = canary.weight
        self.total = canary.weight_total
        self._draw = draw  # randrange(total): 0..total-1

    @classmethod
    def build(cls, canary: Canary | None) -> CanaryRoute | None:
        return None if canary is None else cls(canary)

    def chosen(self, request: RequestHead) -> bool:
        """Whether the canary serves `request`."""
        if self._header is not None:
            found = self._header.search(request.block)
            if found is not None:
                value = found.group(1).rstrip(b" \t")
                if self._value is not None:
                    if value == self._value:
                        return True
                elif self._pattern is not None:
                    if self._pattern.search(value) is not None:
                        return True
                elif value == ALWAYS:
                    return True
                elif value == NEVER:
                    return False
        if self._cookie is not None and request.cookies:
            value = cookie_value(request.cookies, self._cookie)
            if value == ALWAYS:
                return True
            if value == NEVER:
                return False
        weight = self.weight
        if weight <= 0:
            return False
        if weight >= self.total:
            return True
        return self._draw(self.total) < weight


def cookie_value(lines: list[tuple[int, int, bytes]] | tuple[()], name: bytes) -> bytes | None:
    """The value of the first cookie called `name` (lowercase) in the Cookie header lines."""
    for _, _, line in lines:
        for pair in line.split(b";"):
            key, sep, value = pair.partition(b"=")
            if sep and key.strip().lower() == name:
                return value.strip()
    return None
