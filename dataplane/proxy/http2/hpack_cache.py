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
  same fields as long as the table is unchanged, which `_CountedTable` tells (any addition or
  size change moves its `generation` and empties the cache). Other blocks are decoded by
  `hpack` as before, with all of its checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple
from hpack.hpack import INDEX_NEVER, INDEX_NONE, encode_integer
from hpack.table import HeaderTable

MAX_ENCODED = 4096  # fields whose coded bytes are kept (shared by the worker's connections)
MAX_VALUE = 256  # longer values are coded each time (rarely repeated, costly to keep)
MAX_BLOCKS = 32  # decoded blocks kept per connection
MAX_BLOCK = 512  # longer blocks are decoded each time
_TABLE_SIZE_ZERO = b"\x20"  # dynamic table size update to 0 (RFC 7541 6.3)

_encoded: dict[tuple[bytes, bytes], bytes] = {}
_seen: set[tuple[bytes, bytes]] = set()  # fields coded once, not kept yet
_prefixes: dict[bytes, bytes] = {}  # a name's part of a field coded without Huffman
_LENGTHS = tuple(bytes(encode_integer(size, 7)) for size in range(127))  # plain string lengths
_NO_NAME: tuple[int, dict[bytes, int]] = (0, {})


class CachedEncoder(Encoder):
    """An encoder without a dynamic table, whose fields' bytes are cached."""

    def __init__(self) -> None:
        super().__init__()
        self._announced = False  # the size update to 0 went out in a first block

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: any size is at least our 0."""

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        cache = _encoded
        parts = [] if self._announced else [_TABLE_SIZE_ZERO]
        self._announced = True
        append = parts.append
        for field in headers:
            if type(field) is tuple:
                coded = cache.get(field)
                if coded is None:
                    coded = self._first(field)
            else:  # a HeaderTuple (NeverIndexedHeaderTuple: never indexed, anywhere)
                name, value = bytes(field[0]), bytes(field[1])
                index = INDEX_NONE if getattr(field, "indexable", True) else INDEX_NEVER
                coded = self._field(name, value, index)
            append(coded)
        return b"".join(parts)

    def _first(self, field: tuple[bytes, bytes]) -> bytes:
        """A field not in the cache: coded plain the first time it is seen (a request id is
        never seen twice), Huffman-coded and kept from the second."""
        value = field[1]
        if len(value) > MAX_VALUE:
            return self._field(field[0], value, INDEX_NONE, False)
        seen = _seen
        if field not in seen:
            if len(seen) >= MAX_ENCODED:
                seen.clear()
            seen.add(field)
            return self._plain(field[0], value)
        seen.discard(field)
        coded = self._field(field[0], value, INDEX_NONE, True)
        if len(_encoded) >= MAX_ENCODED:
            _encoded.clear()
        _encoded[field] = coded
        return coded

    def _plain(self, name: bytes, value: bytes) -> bytes:
        """`_field(name, value, INDEX_NONE, False)`, its name's part (hpack's coding of the
        field with an empty value, less that value's length) kept per name."""
        table = self.header_table
        if value in table.STATIC_TABLE_MAPPING.get(name, _NO_NAME)[1]:
            return self._field(name, value, INDEX_NONE, False)  # a static index
        prefix = _prefixes.get(name)
        if prefix is None:
            match = table.search(name, b"\x00")  # no static entry has that value
            if match is None:
                prefix = self._encode_literal(name, b"", INDEX_NONE, False)[:-1]
            else:
                prefix = self._encode_indexed_literal(match[0], b"", INDEX_NONE, False)[:-1]
            if len(_prefixes) >= MAX_ENCODED:
                _prefixes.clear()
            _prefixes[name] = prefix
        size = len(value)
        length = _LENGTHS[size] if size < 127 else bytes(encode_integer(size, 7))
        return prefix + length + value

    def _field(self, name: bytes, value: bytes, index_bit: bytes, huffman: bool = True) -> bytes:
        """One field coded by hpack, referring to the static table only."""
        match = self.header_table.search(name, value)  # the dynamic table stays empty
        if match is None:
            return self._encode_literal(name, value, index_bit, huffman)
        index, _, perfect = match
        if perfect is not None:
            return self._encode_indexed(index)
        return self._encode_indexed_literal(index, value, index_bit, huffman)


class _CountedTable(HeaderTable):
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
        self.header_table = _CountedTable()
        self._blocks: dict[bytes, list[HeaderTuple]] = {}
        self._state = (0, max_header_list_size)  # what the remembered blocks were decoded under

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        table = self.header_table
        assert isinstance(table, _CountedTable)
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
