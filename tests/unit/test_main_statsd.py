"""The StatsD drain without sockets: names, line shapes, deltas, datagrams, a round."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.command.responses import (
    BackendMetrics,
    Bucket,
    ClusterMetrics,
    FilteredHistogram,
    FilteredMetrics,
    FilteredMetricsInner,
    WorkerMetrics,
)
from dataplane.main.statsd import MAX_DATAGRAM, Drain, datagrams, worker_origin
from dataplane.main.statsd_lines import Format, Origin, flatten, sample_rate, sozu_name, timings


def count(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(count=value))


def gauge(value: int) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(gauge=value))


def histogram(per_bucket: list[int], total_us: int) -> FilteredHistogram:
    """Bounds 1 ms, 10 ms, 100 ms; `per_bucket` has one more count: above 100 ms."""
    running, buckets = 0, []
    for le, n in zip((1_000, 10_000, 100_000), per_bucket, strict=False):
        running += n
        buckets.append(Bucket(le=le, count=running))
    return FilteredHistogram(sum=total_us, count=sum(per_bucket), buckets=buckets)


def timed(h: FilteredHistogram) -> FilteredMetrics:
    return FilteredMetrics(inner=FilteredMetricsInner(histogram=h))


def test_sozu_names() -> None:
    assert sozu_name("http.requests") == "http.requests"
    assert sozu_name("http.status.2xx") == "http.status.2xx"
    assert sozu_name("http.answers:404") == "http.404.errors"
    assert sozu_name("http.answers:301") == "http.301.redirection"
    assert sozu_name("http.answers:418") == "http.other.errors"
    assert sozu_name("tls.handshakes:TLSv1.3") == "tls.version.TLSv1_3"
    assert sozu_name("tls.handshakes:unknown") == "tls.version.Unknown"
    assert sozu_name("listener.accepted:127.0.0.1:8080") == "listener.accepted.total"
    assert sozu_name("backend.connections") == "backend.connections.opened"  # sozu's: a gauge
    assert sozu_name("odd:a b|c") == "odd.a_b_c"


def test_untagged_and_tagged_shapes() -> None:
    plain = Format("sozu", tagged=False, version="1.2.3")
    assert plain.line("WRK-00", (None, None), "http.requests", "3|c") == (
        "sozu.WRK-00.http.requests:3|c"
    )
    assert plain.line("WRK-01", ("app", None), "bytes_in", "9|c") == (
        "sozu.WRK-01.cluster.app.bytes_in:9|c"
    )
    assert plain.line("WRK-01", ("app", "app-1"), "bytes_in", "9|c") == (
        "sozu.WRK-01.cluster.app.backend.app-1.bytes_in:9|c"
    )
    tagged = Format("edge", tagged=True, version="1.2.3")
    assert tagged.line("WRK-00", (None, None), "http.requests", "3|c") == (
        "edge.http.requests,origin=WRK-00,version=1.2.3:3|c"
    )
    assert tagged.line("WRK-00", ("app", None), "request_time", "0.5|ms") == (
        "edge.cluster.request_time,origin=WRK-00,version=1.2.3,cluster_id=app:0.5|ms"
    )
    assert tagged.line("WRK-00", ("a,b", "x=y"), "bytes_out", "1|c") == (
        "edge.backend.bytes_out,origin=WRK-00,version=1.2.3,cluster_id=a_b,backend_id=x_y:1|c"
    )
    assert worker_origin(3) == "WRK-03" and worker_origin("12") == "WRK-12"


def test_flatten_sums_labelled_keys_by_scope() -> None:
    metrics = WorkerMetrics(
        proxy={
            "listener.accepted:127.0.0.1:80": count(2),
            "listener.accepted:127.0.0.1:443": count(3),
            "client.connections": gauge(4),
            "sessions.evicted": gauge(1),
        },
        clusters={
            "app": ClusterMetrics(
                cluster={"http.requests": count(5)},
                backends=[BackendMetrics(backend_id="b1", metrics={"http.requests": count(5)})],
            )
        },
    )
    assert flatten(metrics) == {
        (None, None, "listener.accepted.total"): ("c", 5),
        (None, None, "client.connections"): ("g", 4),
        (None, None, "sessions.evicted"): ("c", 1),
        ("app", None, "http.requests"): ("c", 5),
        ("app", "b1", "http.requests"): ("c", 5),
    }


def lines(origin: Origin, metrics: WorkerMetrics) -> list[str]:
    return origin.lines("WRK-00", Format(), flatten(metrics))


def test_counters_are_per_interval_deltas_and_gauges_sent_when_changed() -> None:
    origin = Origin()
    first = WorkerMetrics(proxy={"http.requests": count(3), "client.connections": gauge(2)})
    assert lines(origin, first) == [
        "sozu.WRK-00.http.requests:3|c",
        "sozu.WRK-00.client.connections:2|g",
    ]
    assert lines(origin, first) == []  # nothing new: nothing sent
    second = WorkerMetrics(proxy={"http.requests": count(10), "client.connections": gauge(0)})
    assert lines(origin, second) == [
        "sozu.WRK-00.http.requests:7|c",
        "sozu.WRK-00.client.connections:0|g",
    ]
    cleared = WorkerMetrics(proxy={"http.requests": count(4), "client.connections": gauge(0)})
    assert lines(origin, cleared) == ["sozu.WRK-00.http.requests:4|c"]  # `metrics clear`


def test_a_key_gone_from_the_answer_is_forgotten() -> None:
    origin = Origin()
    cluster = ClusterMetrics(cluster={"http.requests": count(5)})
    assert lines(origin, WorkerMetrics(clusters={"old": cluster})) == [
        "sozu.WRK-00.cluster.old.http.requests:5|c"
    ]
    assert lines(origin, WorkerMetrics()) == []  # removed: its figures went with it
    again = ClusterMetrics(cluster={"http.requests": count(8)})  # re-added, counting from 0
    assert lines(origin, WorkerMetrics(clusters={"old": again})) == [
        "sozu.WRK-00.cluster.old.http.requests:8|c"
    ]


def test_timings_one_value_per_request_of_the_interval() -> None:
    assert timings(None, histogram([0, 1, 0, 0], 2_345)) == ["2.345|ms"]  # alone: exact
    before = histogram([0, 1, 0, 0], 2_345)
    now = histogram([3, 1, 2, 1], 500_000)
    assert timings(before, now) == [
        "1|ms|@" + sample_rate(3),
        "100|ms|@" + sample_rate(2),
        "100|ms",  # above the last bound: counted at it
    ]
    assert timings(now, now) == []
    assert timings(now, histogram([1, 0, 0, 0], 100)) == ["0.1|ms"]  # cleared: starts again


@pytest.mark.parametrize("n", [*range(2, 300), 999, 49_999, 1_000_003, 12_345_678])
def test_sample_rates_count_back_to_the_number_of_requests(n: int) -> None:
    rate = float(sample_rate(n))
    assert int(1 / rate) == n  # as Telegraf counts it
    assert abs(1 / rate - n) < 1e-6 * n


def test_histograms_in_a_round() -> None:
    origin = Origin()
    first = WorkerMetrics(proxy={"request_time": timed(histogram([2, 0, 0, 0], 900))})
    assert lines(origin, first) == ["sozu.WRK-00.request_time:1|ms|@0.5"]


def test_datagrams_hold_whole_lines_within_the_limit() -> None:
    many = [f"sozu.WRK-00.cluster.c{n}.http.requests:{n}|c" for n in range(500)]
    packed = list(datagrams(many))
    assert all(len(d) <= MAX_DATAGRAM for d in packed) and len(packed) > 1
    assert b"".join(packed).decode().splitlines() == many
    assert all(d.endswith(b"\n") for d in packed)
    long = "x" * 2000
    assert list(datagrams([long, "a:1|c"])) == [long.encode() + b"\n", b"a:1|c\n"]


class FakeSocket:
    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[bytes] = []
        self.refuse = refuse

    def send(self, data: bytes) -> int:
        if self.refuse:
            raise BlockingIOError
        self.sent.append(data)
        return len(data)

    def close(self) -> None:
        pass


def drain(sock: FakeSocket) -> Drain:
    fake: Any = sock
    return Drain("127.0.0.1:8125", Format(), sock=fake)


def test_a_round_per_worker_and_main() -> None:
    sock = FakeSocket()
    found = drain(sock)
    answers: dict[str, WorkerMetrics | None] = {
        "WRK-00": WorkerMetrics(proxy={"http.requests": count(2)}),
        "WRK-01": None,  # no answer in time: skipped
    }
    main = {(None, None, "configuration.clusters"): ("g", 3)}
    found.send(found.round(answers, dict(main)))
    assert b"".join(sock.sent).decode().splitlines() == [
        "sozu.WRK-00.http.requests:2|c",
        "sozu.MAIN.configuration.clusters:3|g",
    ]
    assert found.round({"WRK-01": WorkerMetrics(proxy={"http.requests": count(1)})}, main) == [
        "sozu.WRK-01.http.requests:1|c"
    ]
    assert "WRK-00" not in found.origins  # that worker is gone


def test_adopted_workers_first_answer_is_a_base() -> None:
    found = drain(FakeSocket())
    found.baseline = {"WRK-00"}
    assert found.round({"WRK-00": WorkerMetrics(proxy={"http.requests": count(500)})}, {}) == []
    assert found.round({"WRK-00": WorkerMetrics(proxy={"http.requests": count(502)})}, {}) == [
        "sozu.WRK-00.http.requests:2|c"
    ]


def test_a_full_socket_drops_and_counts() -> None:
    found = drain(FakeSocket(refuse=True))
    found.send(["a:1|c", "b:2|c"])
    assert found.dropped == 1 and found.sent == 0
