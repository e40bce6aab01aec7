"""The worker's buffer pool (dataplane/proxy/buffers.py): lending, the max_buffers budget, the
waiters, and shrinking back after a burst."""

from __future__ import annotations

import mmap

from dataplane.proxy.buffers import NO_BUFFER, BufferPool, FreeList


class Idle:
    """A connection that holds nothing (or whose bytes are all handed on)."""

    def __init__(self) -> None:
        self.swept = 0

    def release_idle_buffers(self) -> bool:
        self.swept += 1
        return True


HOLDER = Idle()


def test_a_buffer_is_an_anonymous_mapping_of_the_asked_size() -> None:
    free = FreeList(16384)
    buffer, view = free.take()
    assert isinstance(buffer, mmap.mmap)
    assert len(buffer) == len(view) == 16384
    view[0:5] = b"hello"
    assert buffer.find(b"llo", 0, 5) == 2
    assert len(NO_BUFFER) == 0 and NO_BUFFER.find(b"\r\n\r\n", 0, 0) == -1


def test_buffers_are_reused_most_recent_first() -> None:
    pool = BufferPool(4096, 131072, min_buffers=0, max_buffers=10)
    first = pool.take_client(HOLDER)
    second = pool.take_client(HOLDER)
    assert first is not None and second is not None
    pool.give_client(*first)
    pool.give_client(*second)
    assert pool.lent == 0
    again = pool.take_client(HOLDER)
    assert again is not None and again[0] is second[0]
    relay = pool.take_relay(HOLDER)
    assert relay is not None and len(relay[0]) == 131072


def test_a_buffer_that_views_may_still_use_is_counted_back_but_never_lent_again() -> None:
    pool = BufferPool(4096, 8192, min_buffers=0, max_buffers=10)
    taken = pool.take_relay(HOLDER)
    assert taken is not None
    pool.give_relay(*taken, reuse=False)
    assert pool.lent == 0
    assert len(pool.relay) == 0
    other = pool.take_relay(HOLDER)
    assert other is not None and other[0] is not taken[0]


def test_the_budget_keeps_a_quarter_for_backend_responses() -> None:
    pool = BufferPool(4096, 8192, min_buffers=0, max_buffers=8)
    clients = [pool.take_client(HOLDER) for _ in range(6)]
    assert all(pair is not None for pair in clients)
    assert pool.take_client(HOLDER) is None  # new work waits...
    relays = [pool.take_relay(HOLDER) for _ in range(2)]
    assert all(pair is not None for pair in relays)  # ...responses in progress do not
    assert pool.take_relay(HOLDER) is None
    assert pool.lent == 8
    assert pool.figures() == {"buffer.in_use": 8, "buffer.capacity": 8, "buffer.free": 0}


def test_waiters_are_woken_in_order_and_a_gone_waiter_passes_its_turn() -> None:
    pool = BufferPool(4096, 8192, min_buffers=0, max_buffers=4)
    held = [pool.take_client(HOLDER) for _ in range(3)]
    assert pool.take_client(HOLDER) is None
    woken: list[str] = []

    def waiter(name: str, still_waiting: bool) -> None:
        def wake() -> bool:
            woken.append(name)
            return still_waiting

        pool.wait(wake)

    waiter("closed meanwhile", False)
    waiter("first", True)
    waiter("second", True)
    pair = held.pop()
    assert pair is not None
    pool.give_client(*pair)
    assert woken == ["closed meanwhile", "first"]
    assert len(pool.waiters) == 1
    assert pool.take_client(HOLDER) is not None  # the woken connection takes it when it reads


def test_a_burst_is_given_back_after_a_quiet_second_down_to_min_buffers() -> None:
    pool = BufferPool(4096, 8192, min_buffers=3, max_buffers=1000)
    burst = [pool.take_client(HOLDER) for _ in range(100)]
    relays = [pool.take_relay(HOLDER) for _ in range(50)]
    for pair in burst + relays:
        assert pair is not None
        pool.give_client(*pair) if len(pair[0]) == 4096 else pool.give_relay(*pair)
    assert pool.tick() == 0  # the free lists were empty during this second: all were used
    assert pool.tick() == 97 + 50  # nobody took any during the next one
    assert len(pool.client) == 3 and len(pool.relay) == 0
    assert pool.tick() == 0


def test_steady_traffic_keeps_its_buffers() -> None:
    pool = BufferPool(4096, 8192, min_buffers=0, max_buffers=100)
    pairs = [pool.take_client(HOLDER) for _ in range(10)]
    for pair in pairs:
        assert pair is not None
        pool.give_client(*pair)
    pool.tick()
    for _ in range(3):  # every second, up to 10 connections read at once
        again = [pool.take_client(HOLDER) for _ in range(10)]
        for pair in again:
            assert pair is not None
            pool.give_client(*pair)
        assert pool.tick() == 0
    assert len(pool.client) == 10


class Connection:
    """Holds one client buffer; gives it back at a sweep once it holds no byte."""

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        pair = pool.take_client(self)
        assert pair is not None
        self.pair: tuple[object, memoryview] | None = pair
        self.busy = True

    def release_idle_buffers(self) -> bool:
        if self.busy:
            return False
        if self.pair is not None:
            buffer, view = self.pair
            self.pool.give_client(buffer, view)  # type: ignore[arg-type]
            self.pair = None
        return True


def test_the_tick_takes_back_the_buffers_of_idle_connections_only() -> None:
    pool = BufferPool(4096, 8192, min_buffers=0, max_buffers=100)
    busy, idle = Connection(pool), Connection(pool)
    idle.busy = False
    pool.tick()
    assert idle.pair is None and busy.pair is not None
    assert pool.lent == 1 and pool.holders == {busy}
    busy.busy = False
    pool.tick()
    assert pool.lent == 0 and pool.holders == set()


def test_a_dry_pool_sweeps_idle_holders_before_making_anyone_wait() -> None:
    pool = BufferPool(4096, 8192, min_buffers=0, max_buffers=4)
    held = [Connection(pool) for _ in range(3)]  # the client share: 4 - 1 kept for responses
    held[1].busy = False
    fresh = Connection(pool)  # no wait: the idle one gave its buffer back
    assert held[1].pair is None and fresh.pair is not None
    assert pool.take_client(HOLDER) is None  # all busy now: the caller waits


def test_a_free_list_is_a_stack_that_keeps_its_room_until_a_trim() -> None:
    """Taking and giving back never shrinks the list (no realloc each way), a taken slot
    keeps no reference to the buffer lent, and a trim releases the oldest, then the room."""
    free = FreeList(4096)
    first, second, third = free.take(), free.take(), free.take()  # new ones
    for buffer, view in (first, second, third):
        free.put(buffer, view)
    assert len(free) == 3 and len(free.pairs) == 3
    taken = [free.take() for _ in range(3)]
    assert [pair[0] for pair in taken] == [third[0], second[0], first[0]]  # warmest first
    assert len(free) == 0 and len(free.pairs) == 3
    assert all(pair is None for pair in free.pairs)  # nothing lent is held here
    for buffer, view in reversed(taken):
        free.put(buffer, view)
    assert len(free.pairs) == 3 and free.take()[0] is third[0]
    free.put(*third)
    free.lowest = 3  # nobody took any for a whole second
    assert free.trim(keep=1) == 2
    assert len(free) == 1 and free.pairs == [third] and free.take()[0] is third[0]
