"""StatsD lines from the workers' figures: sozu's names, sozu's two line shapes, deltas.

Pure code (no socket, no clock): `statsd.py` feeds it one answer per worker per second.

- `sozu_name`: a worker key (`name` or `name:label`) as sozu names it on the wire
  (`http.answers:404` -> `http.404.errors`, `tls.handshakes:TLSv1.3` -> `tls.version.TLSv1_3`,
  `listener.accepted:<address>` summed into `listener.accepted.total`, ...).
- `Format.line`: untagged `<prefix>.<origin>[.cluster.<id>[.backend.<id>]].<name>:<v>|<kind>`
  or tagged (InfluxDB) `<prefix>[.cluster|.backend].<name>,origin=<o>,version=<v>
  [,cluster_id=<id>][,backend_id=<id>]:<v>|<kind>`, as sozu's network drain writes them.
- `Origin.lines`: what changed since the previous answer of one origin (a worker, or main):
  counters as per-interval deltas (`|c`, only when not zero; a figure that went down was reset
  by `metrics clear`, so its delta is its new value), gauges when they changed (`|g`),
  histograms as the interval's requests (`|ms`, one line per bucket they fell in, valued at the
  bucket's upper bound, with the sample rate `|@1/n` for n requests: StatsD servers count the
  line n times; a lone request of the interval is sent with its exact time). A key absent from
  the answer (a removed cluster or backend) is forgotten: it sends nothing more.
"""

from __future__ import annotations

import math

from dataplane.command.responses import FilteredHistogram, FilteredMetrics, WorkerMetrics

Scope = tuple[str | None, str | None]  # (cluster_id, backend_id); (None, None): the process
Key = tuple[str | None, str | None, str]  # scope and name
Flat = dict[Key, tuple[str, int | FilteredHistogram]]  # key -> (kind: c, g or ms, value)

# Characters that would break a StatsD line (or an InfluxDB tag) inside an id or a label.
_UNSAFE = str.maketrans(dict.fromkeys(":|@\n\r\t ,=#", "_"))
# pysozu keys that mean something else under sozu's name (sozu's is a gauge of open ones).
_RENAMED = {"backend.connections": "backend.connections.opened"}
_SUMMED = {"listener.accepted": "listener.accepted.total", "listener.active": "listener.active"}
_ERROR_ANSWERS = {400, 401, 404, 408, 413, 502, 503, 504, 507}
_COUNTED = {"sessions.evicted"}  # a count the worker reports as a gauge; a counter in sozu


def clean(text: str) -> str:
    return text.translate(_UNSAFE)


def sozu_name(key: str) -> str:
    """The StatsD name of a worker key (`name` or `name:label`)."""
    base, colon, label = key.partition(":")
    if not colon:
        return _RENAMED.get(base, base)
    if base in _SUMMED:
        return _SUMMED[base]
    if base == "http.answers" and label.isdigit():
        status = int(label)
        if 300 <= status < 400:
            return f"http.{status}.redirection"
        return f"http.{status if status in _ERROR_ANSWERS else 'other'}.errors"
    if base == "tls.handshakes":
        return "tls.version." + (
            "Unknown" if label == "unknown" else clean(label.replace(".", "_"))
        )
    return f"{base}.{clean(label).replace('.', '_')}"


class Format:
    """sozu's line shapes; `prefix` replaces `sozu`, `version` is the tagged lines' version."""

    def __init__(self, prefix: str = "sozu", tagged: bool = False, version: str = "") -> None:
        self.prefix = prefix
        self.tagged = tagged
        self.version = clean(version)

    def line(self, origin: str, scope: Scope, name: str, value: str) -> str:
        """`value` holds the value and what follows it: `3|c`, `0.5|ms|@0.25`."""
        cluster_id, backend_id = scope
        prefix = self.prefix
        if self.tagged:
            tags = f",origin={origin},version={self.version}"
            if cluster_id is None:
                return f"{prefix}.{name}{tags}:{value}"
            tags += f",cluster_id={clean(cluster_id)}"
            if backend_id is None:
                return f"{prefix}.cluster.{name}{tags}:{value}"
            return f"{prefix}.backend.{name}{tags},backend_id={clean(backend_id)}:{value}"
        if cluster_id is None:
            return f"{prefix}.{origin}.{name}:{value}"
        if backend_id is None:
            return f"{prefix}.{origin}.cluster.{clean(cluster_id)}.{name}:{value}"
        cluster = f"{prefix}.{origin}.cluster.{clean(cluster_id)}"
        return f"{cluster}.backend.{clean(backend_id)}.{name}:{value}"


def flatten(metrics: WorkerMetrics) -> Flat:
    """A worker's answer by scope and sozu name (labelled keys of one name summed)."""
    flat: Flat = {}
    scopes: list[tuple[Scope, dict[str, FilteredMetrics]]] = [((None, None), metrics.proxy)]
    for cluster, figures in metrics.clusters.items():
        scopes.append(((cluster, None), figures.cluster))
        scopes.extend(((cluster, b.backend_id), b.metrics) for b in figures.backends)
    for (cluster_id, backend_id), values in scopes:
        for key, metric in values.items():
            inner = metric.inner
            name = sozu_name(key)
            if inner.histogram is not None:
                flat[(cluster_id, backend_id, name)] = ("ms", inner.histogram)
                continue
            if inner.count is not None:
                kind, value = "c", inner.count
            elif inner.gauge is not None:
                kind, value = ("c" if name in _COUNTED else "g"), inner.gauge
            else:
                continue
            known = flat.get((cluster_id, backend_id, name))
            if known is not None and known[0] == kind and isinstance(known[1], int):
                value += known[1]
            flat[(cluster_id, backend_id, name)] = (kind, value)
    return flat


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.6g}"


def sample_rate(count: int) -> str:
    """`1/count`, written so that a server computing `1 / rate` gets `count` or a hair more
    (Telegraf truncates that to an integer: `0.1666...7` would count 6 requests as 5)."""
    rate = 1.0 / count
    while 1.0 / rate < count:
        rate = math.nextafter(rate, 0.0)
    return repr(rate)


def _per_bucket(histogram: FilteredHistogram) -> list[int]:
    """Counts per bucket (not cumulative); the last one is above every bound."""
    cumulative = [*(bucket.count for bucket in histogram.buckets), histogram.count]
    return [count - below for count, below in zip(cumulative, [0, *cumulative], strict=False)]


def timings(before: FilteredHistogram | None, now: FilteredHistogram) -> list[str]:
    """The `|ms` values of the requests `now` holds and `before` did not."""
    bounds = [bucket.le for bucket in now.buckets]
    if before is None or before.count > now.count or [b.le for b in before.buckets] != bounds:
        before = FilteredHistogram(sum=0, count=0, buckets=[])
    added = now.count - before.count
    if added <= 0:
        return []
    if added == 1:
        return [f"{_ms(max(0, now.sum - before.sum))}|ms"]
    earlier = _per_bucket(before) if before.buckets else [0] * (len(bounds) + 1)
    values = []
    for bound, count, count_before in zip(
        [*bounds, bounds[-1] if bounds else 0], _per_bucket(now), earlier, strict=True
    ):
        fresh = count - count_before
        if fresh > 0:
            rate = "" if fresh == 1 else f"|@{sample_rate(fresh)}"
            values.append(f"{_ms(bound)}|ms{rate}")
    return values


class Origin:
    """What was last seen from one origin (`WRK-NN`, `MAIN`): the base of the next deltas."""

    def __init__(self) -> None:
        self.seen: Flat = {}

    def lines(self, origin: str, form: Format, flat: Flat) -> list[str]:
        out: list[str] = []
        seen = self.seen
        for key, (kind, value) in flat.items():
            scope: Scope = (key[0], key[1])
            previous = seen.get(key)
            old = previous[1] if previous is not None and previous[0] == kind else None
            if isinstance(value, FilteredHistogram):
                before = old if isinstance(old, FilteredHistogram) else None
                out.extend(form.line(origin, scope, key[2], v) for v in timings(before, value))
            elif kind == "c":
                base = old if isinstance(old, int) and old <= value else 0
                if value != base:
                    out.append(form.line(origin, scope, key[2], f"{value - base}|c"))
            elif value != old:
                out.append(form.line(origin, scope, key[2], f"{value}|g"))
        self.seen = flat
        return out
