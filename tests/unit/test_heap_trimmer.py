"""When a worker hands freed memory back to the system (dataplane/proxy/worker/heap.py)."""

from __future__ import annotations

from dataplane.proxy.worker.heap import (
    CLOSED_BEFORE_TRIM,
    MIN_SECONDS_BETWEEN,
    HeapTrimmer,
    _malloc_trim,
)


def test_a_trim_follows_a_burst_of_closes_at_most_every_few_seconds() -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    heap = HeapTrimmer(trim)
    assert not heap.tick(now=0.0, closed=CLOSED_BEFORE_TRIM - 1)  # not enough closed yet
    assert heap.tick(now=1.0, closed=CLOSED_BEFORE_TRIM)
    assert calls == [0]
    assert not heap.tick(now=1.0 + MIN_SECONDS_BETWEEN / 2, closed=10 * CLOSED_BEFORE_TRIM)
    assert heap.tick(now=1.0 + MIN_SECONDS_BETWEEN, closed=10 * CLOSED_BEFORE_TRIM)
    assert not heap.tick(now=100.0, closed=10 * CLOSED_BEFORE_TRIM)  # nothing closed since
    assert heap.trims == 2


def test_glibcs_malloc_trim_is_found_here() -> None:
    trim = _malloc_trim()
    assert trim is not None  # these machines and the image run glibc
    assert trim(0) in (0, 1)


def test_the_booted_worker_trims_once_without_counting_a_burst() -> None:
    calls: list[int] = []
    heap = HeapTrimmer(lambda pad: calls.append(pad) or 1)
    heap.trim_now()
    assert calls == [0]
    assert heap.trims == 0  # the burst counter (and its spacing) is untouched
    assert heap.tick(now=0.0, closed=CLOSED_BEFORE_TRIM)
