"""The ClientHello server-name parser of TLS passthrough (dataplane/proxy/tls/client_hello.py):
real ClientHellos written by Python's ssl into a MemoryBIO, cut, split and damaged."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.proxy.tls.client_hello import server_name


def client_hello(sni: str | None, maximum: ssl.TLSVersion | None = None) -> bytes:
    """The first flight of a real TLS client (no socket: a MemoryBIO)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        context.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def reframed(hello: bytes, size: int) -> bytes:
    """The same handshake message carried by records of at most `size` bytes each."""
    body = hello[5 : 5 + int.from_bytes(hello[3:5], "big")]
    out = bytearray()
    for at in range(0, len(body), size):
        piece = body[at : at + size]
        out += hello[:3] + len(piece).to_bytes(2, "big") + piece
    return bytes(out)


HELLO = client_hello("app.example.com")


def test_real_client_hellos_give_their_name() -> None:
    assert server_name(HELLO) == "app.example.com"
    assert server_name(client_hello("Mixed.Example.COM")) == "mixed.example.com"
    assert server_name(client_hello("a.example", ssl.TLSVersion.TLSv1_2)) == "a.example"


def test_no_sni_is_complete_without_a_name() -> None:
    assert server_name(client_hello(None)) == ""
    assert server_name(client_hello("127.0.0.1")) == ""  # IP addresses are never sent as SNI


def test_every_cut_short_hello_asks_for_more() -> None:
    for end in range(len(HELLO)):
        assert server_name(HELLO[:end]) is None, end


def test_bytes_after_the_hello_do_not_matter() -> None:
    assert server_name(HELLO + b"\x17\x03\x03\x00\x05hello") == "app.example.com"
    assert server_name(HELLO + b"garbage") == "app.example.com"


@pytest.mark.parametrize("size", [1, 7, 64, 300])
def test_a_hello_split_over_records(size: int) -> None:
    split = reframed(HELLO, size)
    assert server_name(split) == "app.example.com"
    step = max(1, len(split) // 97)
    for end in range(0, len(split), step):
        assert server_name(split[:end]) is None, end


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x00\x00",  # empty record
        b"\x16\x02\x01\x00\x05",  # not TLS 1.x
        b"\x17\x03\x03\x00\x05hello",  # application data first
        b"\x16\x03\x01\x48\x01" + b"\x00" * 10,  # record longer than TLS allows
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello
        b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",  # an empty ClientHello
        b"\x16\x03\x01\x00\x04\x01\xff\xff\xff",  # a ClientHello longer than the bound
        b"\x16",  # one byte of something else would be b""
    ],
)
def test_not_a_usable_client_hello(data: bytes) -> None:
    expected = None if data == b"\x16" else ""
    assert server_name(data) == expected


def test_a_hostile_name_is_not_a_name() -> None:
    name = b"app.example.com"
    for bad in (
        b"app/example.com",
        b"app example.com",
        b"app.ex\x00mple.com",
        b"\xe2\x98\x83.example.com"[:15],
    ):
        assert len(bad) == len(name)
        assert server_name(HELLO.replace(name, bad)) == ""


def test_lengths_pointing_past_the_end_are_refused() -> None:
    at = HELLO.index(b"app.example.com")
    damaged = bytearray(HELLO)
    damaged[at - 2 : at] = b"\xff\xff"  # the name's length
    assert server_name(bytes(damaged)) == ""


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    found = server_name(data)
    assert found is None or isinstance(found, str)
    found = server_name(b"\x16\x03\x01" + data)
    assert found is None or isinstance(found, str)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(HELLO) - 1), st.integers(0, 255)), max_size=8))
def test_damaged_real_hellos_never_raise(changes: list[tuple[int, int]]) -> None:
    damaged = bytearray(HELLO)
    for at, value in changes:
        damaged[at] = value
    found = server_name(bytes(damaged))
    assert found is None or isinstance(found, str)
