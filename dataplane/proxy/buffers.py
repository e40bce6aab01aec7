"""The worker's buffers: lent to connections that have bytes to move, taken back from idle ones.

A client connection takes a buffer when it becomes readable; a backend connection takes a larger
one when its response starts to arrive (responses are relayed through it, see
`backend_pool.RELAY_BUFFER_SIZE`). A connection that holds no unread byte gives its buffers back
at the next one-second tick (`sweep`), and at once when the pool runs dry. So a busy keep-alive
connection keeps its buffers from one request to the next (nothing is taken or given per
request), while an idle keep-alive client, the backend connection kept for it, a pooled backend
connection and a quiet WebSocket pipe hold none after a second: memory follows the bytes in
flight, not the connections open.

Each buffer is an anonymous private mmap, not a `bytearray`:
- glibc serves a 16 KiB `bytearray` from its heap, where a freed block comes back to the system
  only if nothing above it is still alive, and a 128 KiB one first by mmap, then (once one was
  freed, raising glibc's dynamic threshold) from the heap too: ten thousand connections opened
  and closed left hundreds of megabytes pinned in the worker. A mapping is unmapped when it is
  dropped, whatever was allocated around it.
- A mapping costs memory only for the pages bytes were written to, where a `bytearray` is
  zero-filled whole: a 200-byte request in a 16 KiB buffer costs one page.

Free buffers are kept for reuse (taking one is a list pop, no system call), and the free lists
shrink by themselves: at each tick, the buffers that stayed free through the whole last second
are released, down to `min_buffers`. `max_buffers` caps the buffers lent at once; a connection
that finds none, even after a sweep, waits without reading until one comes back (its timeouts
still run). A quarter of them is kept for backend responses, so a response in progress never
waits behind new requests.
"""

from __future__ import annotations

import mmap
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

Buffer = mmap.mmap | bytearray
BufferPair = tuple[Buffer, memoryview]

# What a connection holds while it has no buffer: `len()` 0, `find()` finds nothing.
NO_BUFFER: Final[Buffer] = bytearray()
NO_VIEW: Final[memoryview] = memoryview(NO_BUFFER)


class Holder(Protocol):
    def release_idle_buffers(self) -> bool:
        """Give back the buffers holding no byte; True once none is held."""
        ...


def new_buffer(size: int) -> BufferPair:
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return buffer, memoryview(buffer)


class FreeList:
    """Free buffers of one size, a stack: the first `count` of `pairs` (the slots above hold
    None), and the fewest that were free at once since the last trim. The list only
    shrinks in `trim`: popping and appending made CPython's list shrink under half its room
    and grow again, a realloc each way, at every `Connection: close` request."""

    __slots__ = ("count", "lowest", "pairs", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.pairs: list[BufferPair | None] = []
        self.count = 0
        self.lowest = 0

    def __len__(self) -> int:
        return self.count

    def take(self) -> BufferPair:
        count = self.count
        if not count:
            return new_buffer(self.size)
        count -= 1
        pairs = self.pairs
        pair = pairs[count]
        assert pair is not None
        pairs[count] = None  # no reference left to a lent buffer
        self.count = count
        if count < self.lowest:
            self.lowest = count
        return pair

    def put(self, buffer: Buffer, view: memoryview) -> None:
        count = self.count
        pairs = self.pairs
        if count < len(pairs):
            pairs[count] = (buffer, view)
        else:
            pairs.append((buffer, view))
        self.count = count + 1

    def trim(self, keep: int) -> int:
        """Release the buffers nobody took since the last trim (keeping `keep`); how many."""
        release = max(0, min(self.lowest, self.count - keep))
        pairs = self.pairs
        del pairs[self.count :]  # the empty slots on top
        del pairs[:release]  # the oldest: the top of the stack is the warmest
        self.count -= release
        self.lowest = self.count
        return release


class BufferPool:
    """Client buffers (`buffer_size`) and relay buffers for backend connections, lent under one
    budget of `max_buffers` to `holders`; connections that found none wait in `waiters`."""

    __slots__ = ("capacity", "client", "holders", "keep", "lent", "relay", "reserve", "waiters")

    def __init__(
        self, client_size: int, relay_size: int, min_buffers: int, max_buffers: int
    ) -> None:
        self.client = FreeList(client_size)
        self.relay = FreeList(relay_size)
        self.capacity = max(2, max_buffers)
        self.reserve = self.capacity // 4  # only backend responses may take these
        self.keep = max(0, min(min_buffers, self.capacity))
        self.lent = 0
        self.holders: set[Holder] = set()  # everything holding a lent buffer (a superset)
        # Wake-up callbacks of connections waiting for a buffer, first come first served.
        self.waiters: deque[Callable[[], bool]] = deque()

    def take_client(self, holder: Holder) -> BufferPair | None:
        """A buffer to read a client into, or None while the budget is spent even after a
        sweep (the caller waits: see `wait`)."""
        if self.lent >= self.capacity - self.reserve:
            self.sweep()
            if self.lent >= self.capacity - self.reserve:
                return None
        self.lent += 1
        self.holders.add(holder)
        return self.client.take()

    def take_relay(self, holder: Holder) -> BufferPair | None:
        if self.lent >= self.capacity:
            self.sweep()
            if self.lent >= self.capacity:
                return None
        self.lent += 1
        self.holders.add(holder)
        return self.relay.take()

    def give_client(self, buffer: Buffer, view: memoryview, reuse: bool = True) -> None:
        """Back from a connection. `reuse=False`: views into it may still be alive (bytes
        queued for a socket that closed), so it is left to them and only counted back."""
        self.lent -= 1
        if reuse:
            self.client.put(buffer, view)
        if self.waiters:
            self._wake()

    def give_relay(self, buffer: Buffer, view: memoryview, reuse: bool = True) -> None:
        self.lent -= 1
        if reuse:
            self.relay.put(buffer, view)
        if self.waiters:
            self._wake()

    def wait(self, wake: Callable[[], bool]) -> None:
        """`wake` is called once a buffer comes back; it answers False if its connection no
        longer waits (closed meanwhile), and the next waiter is woken instead."""
        self.waiters.append(wake)

    def _wake(self) -> None:
        waiters = self.waiters
        while waiters and not waiters.popleft()():
            pass

    def sweep(self) -> None:
        """Take back what idle holders hold."""
        self.holders = {holder for holder in self.holders if not holder.release_idle_buffers()}

    def tick(self) -> int:
        """Once a second: sweep, then release what stayed free for a whole second, down to
        `min_buffers`. Returns how many buffers were released."""
        if self.holders:
            self.sweep()
        keep_client = max(0, self.keep - self.lent)
        return self.client.trim(keep_client) + self.relay.trim(0)

    def figures(self) -> dict[str, int]:
        return {
            "buffer.in_use": self.lent,
            "buffer.capacity": self.capacity,
            "buffer.free": self.client.count + self.relay.count,
        }
