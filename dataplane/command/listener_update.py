"""A listener update applied to a listener's configuration: the one merge everybody uses.

`update_{http,https,tcp,udp}_listener` carry a partial patch (sozu's `Update*ListenerConfig`).
Main's state (`state.py`), a worker's HTTP and HTTPS listeners (`proxy/clusters.py`,
`proxy/tls/listener.py`) and its TCP and UDP listeners all turn listener + patch into the new
listener with `merge_listener_update`, so a live worker and one respawned from the state agree.

The rules, field by field:

- `None` keeps the listener's value (`address` is the key, never changed);
- `answers`: the patch's entries over the listener's, key by key (an empty map keeps all);
- `http_answers` (the deprecated per-status files): field by field, a set, non-empty value
  replaces the listener's, the others are kept;
- `alpn_protocols` (an `AlpnProtocols` wrapper): its list replaces the listener's; an empty
  list resets to the default (`tls/policy.served_alpn`);
- anything else set (scalars, `trusted_proxies`, `hsts`) replaces the listener's whole.

Pure: validation is the caller's (`state_rules`), and the result shares no mutable part with
either argument, so neither can change it afterwards.
"""

from __future__ import annotations

import copy
from typing import Any, overload

import msgspec

from dataplane.command.messages import (
    AlpnProtocols,
    CustomHttpAnswers,
    HttpListenerConfig,
    HttpsListenerConfig,
    TcpListenerConfig,
    UdpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateHttpsListenerConfig,
    UpdateTcpListenerConfig,
    UpdateUdpListenerConfig,
)

__all__ = ["merge_listener_update"]

ListenerConfig = HttpListenerConfig | TcpListenerConfig | UdpListenerConfig
ListenerPatch = UpdateHttpListenerConfig | UpdateTcpListenerConfig | UpdateUdpListenerConfig


@overload
def merge_listener_update(
    config: HttpsListenerConfig, patch: UpdateHttpsListenerConfig
) -> HttpsListenerConfig: ...
@overload
def merge_listener_update(
    config: HttpListenerConfig, patch: UpdateHttpListenerConfig
) -> HttpListenerConfig: ...
@overload
def merge_listener_update(
    config: TcpListenerConfig, patch: UpdateTcpListenerConfig
) -> TcpListenerConfig: ...
@overload
def merge_listener_update(
    config: UdpListenerConfig, patch: UpdateUdpListenerConfig
) -> UdpListenerConfig: ...
def merge_listener_update(config: ListenerConfig, patch: ListenerPatch) -> ListenerConfig:
    """`config` with what `patch` sets (see the module docstring); a new, independent value.

    A patch field the listener does not have (an HTTPS patch on an HTTP listener) raises
    TypeError: the caller mixed listener kinds.
    """
    if patch.address != config.address:
        raise ValueError(f"update for {patch.address} applied to the listener at {config.address}")
    known = config.__struct_fields__
    changes: dict[str, Any] = {}
    for name in patch.__struct_fields__:
        value = getattr(patch, name)
        if name == "address" or value is None:
            continue
        if name not in known:
            raise TypeError(f"{type(config).__name__} has no {name!r} to update")
        if name == "answers":
            assert isinstance(config, HttpListenerConfig)  # `known` says so
            if value:
                changes["answers"] = {**config.answers, **value}
        elif name == "http_answers":
            assert isinstance(config, HttpListenerConfig)
            changes["http_answers"] = _merged_http_answers(config.http_answers, value)
        elif isinstance(value, AlpnProtocols):
            changes[name] = list(value.values)
        else:
            changes[name] = value
    return copy.deepcopy(msgspec.structs.replace(config, **changes))


def _merged_http_answers(
    current: CustomHttpAnswers | None, patch: CustomHttpAnswers
) -> CustomHttpAnswers:
    """The listener's per-status files, each one the patch sets (non-empty) replaced."""
    merged = msgspec.structs.asdict(current) if current is not None else {}
    merged.update({name: v for name, v in msgspec.structs.asdict(patch).items() if v})
    return CustomHttpAnswers(**merged)
