"""The HTTP/2 limits of one listener: sozu's `h2_*` knobs, with sozu's defaults.

`H2Limits.from_listener` resolves a listener's knobs once (None = sozu's default; every
threshold is at least 1, as sozu clamps them). Per-window counters cover one second and
half-decay rather than reset, so a burst timed at a window edge gains nothing; lifetime
counters never decay. `stream_shrink_ratio` is accepted for compatibility and has no effect:
it sizes sozu's stream slab, and here a stream is a dict entry freed when the stream closes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

WINDOW_SECONDS = 1.0  # the rate window of the per-window flood counters
MAX_WINDOW = 2**31 - 1


@dataclass(frozen=True, slots=True)
class H2Limits:
    max_rst_stream_per_window: int = 100  # CVE-2023-44487 Rapid Reset, CVE-2019-9514
    max_ping_per_window: int = 100  # CVE-2019-9512
    max_settings_per_window: int = 50  # CVE-2019-9515
    max_empty_data_per_window: int = 100  # CVE-2019-9518
    max_window_update_stream0_per_window: int = 100
    max_continuation_frames: int = 20  # per header block, CVE-2024-27316
    max_glitch_count: int = 100  # protocol anomalies, half-decayed per window
    max_rst_stream_lifetime: int = 10_000
    max_rst_stream_abusive_lifetime: int = 50  # resets of streams not answered yet
    max_rst_stream_emitted_lifetime: int = 500  # CVE-2025-8671 MadeYouReset
    initial_connection_window: int = 1_048_576
    max_concurrent_streams: int = 100
    stream_shrink_ratio: int = 2  # accepted, no effect (see the module docstring)
    max_header_list_size: int = 65_536
    max_header_table_size: int = 65_536  # the most HPACK table a peer may make us keep
    max_header_fields: int = 128
    stream_idle_timeout: float = 30.0
    graceful_shutdown_deadline: float = 5.0  # 0: wait for the streams forever
    # Not listener knobs (sozu has them as constants).
    max_ping_lifetime: int = 10_000
    max_settings_lifetime: int = 10_000
    max_settings_entries: int = 64
    initial_stream_window: int = 262_144
    max_frame_size: int = 16_384
    settings_timeout: float = 5.0  # a backend that never acknowledges our SETTINGS

    @classmethod
    def from_listener(cls, listener: Any, back_timeout: float | None = None) -> H2Limits:
        """The limits of an HTTP or HTTPS listener config (its `h2_*` fields; None = default).

        The idle-stream timeout defaults to max(30, back_timeout) as in sozu.
        """
        values: dict[str, Any] = {}
        for name in _KNOBS:
            value = getattr(listener, "h2_" + _KNOB_FIELD.get(name, name), None)
            if value is not None:
                values[name] = value
        if "stream_idle_timeout" not in values:
            timeout = back_timeout if back_timeout is not None else listener.back_timeout
            values["stream_idle_timeout"] = max(30.0, float(timeout))
        return cls().with_values(**values)

    def with_values(self, **values: Any) -> H2Limits:
        """A copy with `values` changed, clamped to what the protocol and sozu allow."""
        clamped: dict[str, Any] = {}
        for name, value in values.items():
            if name == "graceful_shutdown_deadline":
                clamped[name] = max(0.0, float(value))
            elif name in ("stream_idle_timeout", "settings_timeout"):
                clamped[name] = max(1.0, float(value))
            elif name == "initial_connection_window":
                clamped[name] = min(max(65_535, int(value)), MAX_WINDOW)
            elif name == "initial_stream_window":
                clamped[name] = min(max(1, int(value)), MAX_WINDOW)
            elif name == "max_frame_size":
                clamped[name] = min(max(16_384, int(value)), 2**24 - 1)
            else:
                clamped[name] = max(1, int(value))
        return replace(self, **clamped)


# Knob name -> listener field (after `h2_`) where they differ.
_KNOB_FIELD = {
    "stream_idle_timeout": "stream_idle_timeout_seconds",
    "graceful_shutdown_deadline": "graceful_shutdown_deadline_seconds",
}
_NOT_KNOBS = frozenset(
    (
        "max_ping_lifetime",
        "max_settings_lifetime",
        "max_settings_entries",
        "initial_stream_window",
        "max_frame_size",
        "settings_timeout",
    )
)
_KNOBS = tuple(field.name for field in fields(H2Limits) if field.name not in _NOT_KNOBS)
