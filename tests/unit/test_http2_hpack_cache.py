"""The HPACK encoder and decoder that remember: what they send and read is what hpack's do."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple, OversizedHeaderListError
from hpack.hpack import INDEX_NONE

from dataplane.proxy.http2 import hpack_fields
from dataplane.proxy.http2.hpack_cache import CachedDecoder, CachedEncoder

RESPONSE = [
    (b":status", b"200"),
    (b"content-type", b"text/plain"),
    (b"content-length", b"13"),
    (b"x-custom", b"some value"),
    (b"sozu-id", b"01M982YT5G5F9EC55CE84DB0EF"),
]


def test_blocks_decode_to_the_fields_with_no_dynamic_table() -> None:
    encoder, peer = CachedEncoder(), Decoder()
    first = encoder.encode(RESPONSE)
    assert first[:1] == b"\x20"  # the table's size set to 0, once
    assert peer.decode(first, raw=True) == RESPONSE
    second = encoder.encode(RESPONSE)  # Huffman-coded now: seen twice
    assert len(second) < len(first) - 1
    assert peer.decode(second, raw=True) == RESPONSE
    assert encoder.encode(RESPONSE) == second  # no index refers to a previous block
    assert peer.header_table_size == 0 and not peer.header_table.dynamic_entries
    assert encoder.encode([(b":status", b"200")]) == b"\x88"  # static index 8


def test_peer_settings_do_not_give_the_encoder_a_table() -> None:
    encoder = CachedEncoder()
    encoder.header_table_size = 65_536
    assert encoder.header_table_size == 0
    encoder.encode(RESPONSE)
    assert not encoder.header_table.dynamic_entries


def test_never_indexed_fields_stay_so_and_long_values_are_not_kept() -> None:
    encoder, peer = CachedEncoder(), Decoder()
    secret = NeverIndexedHeaderTuple(b"authorization", b"Bearer x")
    long_value = (b"x-long", b"v" * (hpack_fields.MAX_VALUE + 1))
    block = encoder.encode([secret, long_value])
    decoded = list(peer.decode(block, raw=True))
    assert isinstance(decoded[0], NeverIndexedHeaderTuple)
    assert decoded == [(b"authorization", b"Bearer x"), long_value]
    assert long_value not in hpack_fields.encoded
    assert secret not in hpack_fields.encoded


def test_the_shared_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack_fields, "MAX_ENCODED", 8)
    hpack_fields.encoded.clear()
    encoder, peer = CachedEncoder(), Decoder()
    fields = [(b"x-n", str(n).encode()) for n in range(20)]
    for _ in range(3):
        assert peer.decode(encoder.encode(fields), raw=True) == fields
        assert len(hpack_fields.encoded) <= 8 and len(hpack_fields.seen) <= 8


def test_repeated_indexed_blocks_come_from_the_cache_until_the_table_changes() -> None:
    client, server = Encoder(), CachedDecoder(65_536)
    request = [(b":method", b"GET"), (b"x-a", b"1")]
    server.decode(client.encode(request), raw=True)  # x-a: 1 enters the table
    block = client.encode(request)  # all indexed now
    assert server.decode(block, raw=True) == request
    assert block in server._blocks
    assert server.decode(block, raw=True) == request
    server.decode(client.encode([(b"x-b", b"2")]), raw=True)  # index 62 is now x-b
    assert server.decode(block, raw=True) == [(b":method", b"GET"), (b"x-b", b"2")]


def test_a_returned_list_is_the_callers_own() -> None:
    client, server = Encoder(), CachedDecoder(65_536)
    server.decode(client.encode([(b"x-a", b"1")]), raw=True)
    block = client.encode([(b"x-a", b"1")])
    first = server.decode(block, raw=True)
    assert isinstance(first, list)
    first.clear()
    assert server.decode(block, raw=True) == [(b"x-a", b"1")]


def test_the_list_size_limit_holds_for_remembered_blocks() -> None:
    client, server = Encoder(), CachedDecoder(65_536)
    server.decode(client.encode([(b"x-a", b"v" * 100)]), raw=True)
    block = client.encode([(b"x-a", b"v" * 100)] * 3)
    assert len(server.decode(block, raw=True)) == 3
    server.max_header_list_size = 200  # lowered (our SETTINGS acknowledged)
    with pytest.raises(OversizedHeaderListError):
        server.decode(block, raw=True)


def test_first_seen_fields_are_hpacks_plain_coding() -> None:
    encoder, reference = CachedEncoder(), CachedEncoder()
    fields = [
        (b"sozu-id", b"01M982YT5G5F9EC55CE84DB0EF"),  # a name not in the static table
        (b"content-type", b"x/unseen"),  # a static name
        (b"accept-charset", b""),  # a static name and value
        (b"x-long", b"v" * 200),  # a value length over one byte
        (b"x-empty", b""),
    ]
    for name, value in fields:
        hpack_fields.seen.discard((name, value))
        expected = hpack_fields.field_bytes(reference, name, value, INDEX_NONE, False)
        assert hpack_fields.first(encoder, (name, value)) == expected
    assert (
        Decoder().decode(
            encoder.encode([])
            + b"".join(
                hpack_fields.field_bytes(reference, n, v, INDEX_NONE, False) for n, v in fields
            ),
            raw=True,
        )
        == fields
    )
