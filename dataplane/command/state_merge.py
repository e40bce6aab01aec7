"""Reload's three-way merge: the live state, plus what the file changed since main last read it.

`three_way(live, before, after)`: `before` is the state the configuration file described when
main last read it (at start, or at the last reload), `after` the one it describes now. The
result is `live` wherever the file did not change, and the file's new version where it did:

- an object (cluster, frontend, backend, certificate, listener) the file did not change keeps
  its live version, whatever the command socket did to it (added, changed or removed it);
- an object the file added, changed or removed takes the file's new version, or goes: for that
  object the file's change wins over a runtime change;
- a listener is merged setting by setting: the settings the file changed take the file's value,
  the others keep the live one (a runtime `listener update` of another setting stays). A
  listener the file changed but the command socket removed comes back as the file has it.

A listener the file removed that still carries frontends or certificates the file never had is
kept and named in the conflicts: removing it would take the routes added at runtime with it.
`diff(live, merged)` then gives the requests (state_diff.py).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import msgspec

from dataplane.command.messages import AddBackend, CertificateAndKey, ListenerType
from dataplane.command.state import ConfigState

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_KINDS = (ListenerType.HTTP, ListenerType.HTTPS, ListenerType.TCP, ListenerType.UDP)


def _merge(
    live: dict[K, V],
    before: dict[K, V],
    after: dict[K, V],
    combine: Callable[[V, V, V], V] | None = None,
) -> dict[K, V]:
    """`live`, with every key whose value changed from `before` to `after` set as in `after`."""
    merged = dict(live)
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if new is None:
            merged.pop(key, None)
        elif combine is not None and old is not None and key in live:
            merged[key] = combine(live[key], old, new)
        else:
            merged[key] = new
    return merged


def _merge_listener(live: Any, old: Any, new: Any) -> Any:
    """The live listener with the settings the file changed (`active` included) set anew."""
    changed = {
        name: getattr(new, name)
        for name in new.__struct_fields__
        if getattr(old, name) != getattr(new, name)
    }
    return msgspec.structs.replace(live, **changed)


BackendKey = tuple[str, str, Any]  # cluster id, backend id, address


def _backends(state: ConfigState) -> dict[BackendKey, AddBackend]:
    return {
        (cluster_id, backend.backend_id, backend.address): backend
        for cluster_id, known in state.backends.items()
        for backend in known
    }


def _certificates(state: ConfigState) -> dict[tuple[Any, str], CertificateAndKey]:
    return {
        (address, fingerprint): certificate
        for address, known in state.certificates.items()
        for fingerprint, certificate in known.items()
    }


def three_way(
    live: ConfigState, before: ConfigState, after: ConfigState
) -> tuple[ConfigState, list[str]]:
    """The state a reload aims at, and the file's changes it could not make (see above)."""
    merged = ConfigState()
    for kind in _KINDS:
        table = _merge(
            live.listener_table(kind),
            before.listener_table(kind),
            after.listener_table(kind),
            _merge_listener,
        )
        merged.listener_table(kind).update(table)
        fronts = _merge(
            live.frontend_table(kind), before.frontend_table(kind), after.frontend_table(kind)
        )
        merged.frontend_table(kind).update(fronts)
    merged.clusters = _merge(live.clusters, before.clusters, after.clusters)
    for (cluster_id, _, _), backend in _merge(
        _backends(live), _backends(before), _backends(after)
    ).items():
        merged.backends.setdefault(cluster_id, []).append(backend)
    for known in merged.backends.values():
        known.sort(key=lambda backend: (backend.backend_id, backend.address))  # as the state
    for (address, fingerprint), certificate in _merge(
        _certificates(live), _certificates(before), _certificates(after)
    ).items():
        merged.certificates.setdefault(address, {})[fingerprint] = certificate
    return merged, _keep_used_listeners(live, merged)


def _keep_used_listeners(live: ConfigState, merged: ConfigState) -> list[str]:
    """Put back the listeners the file removed that runtime frontends or certificates use."""
    conflicts = []
    for kind in _KINDS:
        table = merged.listener_table(kind)
        for address, listener in sorted(live.listener_table(kind).items()):
            if address in table:
                continue
            fronts = sum(1 for f in merged.frontend_table(kind).values() if f.address == address)
            certificates = len(merged.certificates.get(address, {}))
            if kind != ListenerType.HTTPS:
                certificates = 0
            if fronts or certificates:
                table[address] = listener
                users = [f"{fronts} frontends"] if fronts else []
                users += [f"{certificates} certificates"] if certificates else []
                conflicts.append(
                    f"{kind.name.lower()} listener {address} was removed from the file but "
                    f"kept: {' and '.join(users)} added through the command socket still use "
                    "it (remove them, then reload)"
                )
    return conflicts
