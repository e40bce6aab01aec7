"""HPACK with memory: `hpack`'s encoder and decoder, minus the work a proxy repeats per stream.

A profile of HTTP/2 under h2load put about a fifth of the worker's time in HPACK, coding the
same few header fields again and again. Both classes keep `hpack`'s coding; they only skip
repeating it:

- `CachedEncoder` never indexes into its dynamic table (its first block sets the table's size
  to 0, RFC 7541 6.3, which no later SETTINGS can make too large): each field is then coded
  alone (static index, or a literal without indexing, RFC 7541 6.2.2), whatever was sent
  before, so a field's bytes are coded once by `hpack` and reused from a bounded cache shared
  by every connection of the worker. nginx does the same (no dynamic table in responses).
  A `NeverIndexedHeaderTuple` keeps its never-indexed form and is not cached.
- `CachedDecoder` remembers the fields of a header block that did not change the dynamic table
  (every field indexed, as a client repeating a request sends): the same bytes decode to the
  same fields as long as the table is unchanged, which `CountedTable` tells (any addition or
  size change moves its `generation` and empties the cache). Other blocks are decoded by
  `hpack` as before, with all of its checks. `fast_receive.decoded` reads a remembered block
  the way `decode` does, compiled.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable

from dataplane.proxy.http2.hpack_fields import encode_fields

MAX_BLOCKS = 32  # decoded blocks kept per connection
MAX_BLOCK = 512  # longer blocks are decoded each time
_TABLE_SIZE_ZERO = b"\x20"  # dynamic table size update to 0 (RFC 7541 6.3)


class CachedEncoder(Encoder):
    """An encoder without a dynamic table, whose fields' bytes are cached (`hpack_fields`)."""

    def __init__(self) -> None:
        super().__init__()
        self.announced = False  # the size update to 0 went out in a first block

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: any size is at least our 0."""

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        if self.announced:
            return encode_fields(self, headers)
        self.announced = True
        return _TABLE_SIZE_ZERO + encode_fields(self, headers)


class CountedTable(HeaderTable):
    """hpack's table, counting the changes to its dynamic part."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    def _get_maxsize(self) -> int:
        return self._maxsize

    def _set_maxsize(self, value: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, value)  # type: ignore[attr-defined]

    maxsize = property(_get_maxsize, _set_maxsize)


class CachedDecoder(Decoder):
    """A decoder remembering the blocks that left its dynamic table unchanged."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self.header_table = CountedTable()
        self._blocks: dict[bytes, list[HeaderTuple]] = {}
        self._state = (0, max_header_list_size)  # what the remembered blocks were decoded under

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        table = self.header_table
        assert isinstance(table, CountedTable)
        state = (table.generation, self.max_header_list_size)
        blocks = self._blocks
        if state != self._state:
            blocks.clear()
            self._state = state
        elif raw:
            fields = blocks.get(data)
            if fields is not None:
                return list(fields)
        decoded = super().decode(data, raw)
        if raw and table.generation == state[0] and len(data) <= MAX_BLOCK:
            if len(blocks) >= MAX_BLOCKS:
                blocks.clear()
            fields = list(decoded)
            blocks[bytes(data)] = fields
            return list(fields)
        return decoded
