"""Named zones: limiters that frontends naming the same zone share (nginx's `limit_req_zone`,
`limit_conn_zone`).

A zone lives while a route holds its limiter (a weak registry): a reconfiguration that keeps
the zone keeps its counts, one that drops every route naming it forgets them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

_Limiter = TypeVar("_Limiter")

_ZONES: weakref.WeakValueDictionary[Hashable, object] = weakref.WeakValueDictionary()


def shared(key: Hashable, build: Callable[[], _Limiter]) -> _Limiter:
    """The limiter of zone `key` (its name and every setting, so that two limits that differ
    never share counts), built by `build` the first time."""
    found = _ZONES.get(key)
    if found is None:
        found = build()
        _ZONES[key] = found
    return found  # type: ignore[return-value]
