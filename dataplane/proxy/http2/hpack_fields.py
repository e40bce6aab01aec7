"""The coding of `CachedEncoder`'s header fields (RFC 7541, no dynamic table), compiled.

`hpack_cache.CachedEncoder` subclasses hpack's `Encoder` and so stays interpreted (mypyc
compiles single inheritance from its own classes only); its per-field work lives here, on
module-level caches shared by the worker's connections, so that mypyc compiles it: a field is
coded alone (a static index, or a literal without indexing, RFC 7541 6.2.2), whatever was sent
before, by hpack's own methods the first times, then from the caches. A callgrind profile of
small HTTP/2 responses (bench/instructions --compare h2-builds) put this coding, interpreted, at
about 12,000 instructions per response, most of it for the one field unique to each response
(its request id), coded plain by `_plain`.

`encode_fields` is the block without the table size update `CachedEncoder.encode` puts first;
`fast_path.send_headers` calls it directly once that update went out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from hpack import Encoder
from hpack.hpack import INDEX_NEVER, INDEX_NONE, encode_integer
from hpack.table import HeaderTable

# not Final: the tests lower it (a compiled module reads a non-Final global from its dict)
MAX_ENCODED = 4096  # fields whose coded bytes are kept (shared by the worker's connections)
MAX_VALUE: Final = 256  # longer values are coded each time (rarely repeated, costly to keep)

encoded: Final[dict[tuple[bytes, bytes], bytes]] = {}
seen: Final[set[tuple[bytes, bytes]]] = set()  # fields coded once, not kept yet
prefixes: Final[dict[bytes, bytes]] = {}  # a name's part of a field coded without Huffman
_LENGTHS: Final = tuple(bytes(encode_integer(size, 7)) for size in range(127))
_STATIC: Final = HeaderTable.STATIC_TABLE_MAPPING


def encode_fields(encoder: Encoder, headers: Iterable[Any]) -> bytes:
    """The fields' block, each field coded alone (no table size update before them)."""
    cache = encoded
    parts: list[bytes] = []  # parts.append stays a list append (a bound method is a call)
    for field in headers:
        if type(field) is tuple:
            coded = cache.get(field)
            if coded is None:
                coded = first(encoder, field)
        else:  # a HeaderTuple (NeverIndexedHeaderTuple: never indexed, anywhere)
            name, value = bytes(field[0]), bytes(field[1])
            index = INDEX_NONE if getattr(field, "indexable", True) else INDEX_NEVER
            coded = field_bytes(encoder, name, value, index, True)
        parts.append(coded)
    return b"".join(parts)


def first(encoder: Encoder, field: Any) -> bytes:
    """A field (a `tuple[bytes, bytes]`, kept boxed) not in the cache: coded plain the first
    time it is seen (a request id is never seen twice), Huffman-coded and kept from the second."""
    name: bytes = field[0]
    value: bytes = field[1]
    if len(value) > MAX_VALUE:
        return field_bytes(encoder, name, value, INDEX_NONE, False)
    known = seen
    if field not in known:
        if len(known) >= MAX_ENCODED:
            known.clear()
        known.add(field)
        return plain(encoder, name, value)
    known.discard(field)
    coded = field_bytes(encoder, name, value, INDEX_NONE, True)
    if len(encoded) >= MAX_ENCODED:
        encoded.clear()
    encoded[field] = coded
    return coded


def plain(encoder: Encoder, name: bytes, value: bytes) -> bytes:
    """`field_bytes(name, value, INDEX_NONE, False)`, its name's part (hpack's coding of the
    field with an empty value, less that value's length) kept per name."""
    static = _STATIC.get(name)
    if static is not None and value in static[1]:
        return field_bytes(encoder, name, value, INDEX_NONE, False)  # a static index
    prefix = prefixes.get(name)
    if prefix is None:
        match = encoder.header_table.search(name, b"\x00")  # no static entry has that value
        if match is None:
            prefix = bytes(encoder._encode_literal(name, b"", INDEX_NONE, False)[:-1])
        else:
            prefix = bytes(encoder._encode_indexed_literal(match[0], b"", INDEX_NONE, False)[:-1])
        if len(prefixes) >= MAX_ENCODED:
            prefixes.clear()
        prefixes[name] = prefix
    size = len(value)
    length = _LENGTHS[size] if size < 127 else bytes(encode_integer(size, 7))
    return prefix + length + value


def field_bytes(
    encoder: Encoder, name: bytes, value: bytes, index_bit: bytes, huffman: bool
) -> bytes:
    """One field coded by hpack, referring to the static table only."""
    match = encoder.header_table.search(name, value)  # the dynamic table stays empty
    if match is None:
        return bytes(encoder._encode_literal(name, value, index_bit, huffman))
    index, _, perfect = match
    if perfect is not None:
        return bytes(encoder._encode_indexed(index))
    return bytes(encoder._encode_indexed_literal(index, value, index_bit, huffman))
