"""The PROXY protocol header parser (proxy_protocol.parse_header): v2 binary and v1 text.

The input is the first bytes a client sends on an `expect_proxy` listener: a header (v2 or v1),
maybe cut short, maybe followed by the request behind it, or anything else.

Expected answer to bad input: `ProxyProtocolError`. None means "more bytes are needed", which
must only be said of a prefix of something that could still be a header. Anything else raised
is a crash. Properties checked (an AssertionError is a finding too): a parsed header is no
longer than the input and no longer than the parser's limits; the same bytes fed as every
prefix never give an answer that a longer prefix contradicts (a prefix refused, then the whole
accepted); the header's own bytes parse alone to the same header (the request behind it plays
no part); a source or destination is a (literal IP, port 0-65535) pair; `peer` returns the
source, or the real peer when the header has none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from dataplane.proxy.proxy_protocol.header import (
    MAX_V2_HEADER,
    V1_MAX_HEADER,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
    v2_header,
)

MAX_LEN = 1200
DICTIONARY = (
    V2_SIGNATURE,
    b"PROXY TCP4 ",
    b"PROXY TCP6 ",
    b"PROXY UNKNOWN",
    b"\r\n",
    b"\x21\x11",
    b"\x20\x00",
    b"\x21\x21",
    b"127.0.0.1",
    b"::1",
)
REAL = ("192.0.2.1", 40000)


def seeds() -> Iterable[bytes]:
    yield v2_header(("10.1.2.3", 51000), ("10.0.0.1", 443)) + b"GET / HTTP/1.1\r\n\r\n"
    yield v2_header(("2001:db8::1", 5), ("2001:db8::2", 443))
    yield v2_header(None, local=True)
    yield v2_header(("10.1.2.3", 1), ("10.0.0.1", 2), tlvs=b"\x05\x00\x02ab")
    yield b"PROXY TCP4 10.1.2.3 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n\r\n"
    yield b"PROXY TCP6 2001:db8::1 2001:db8::2 5 443\r\n"
    yield b"PROXY UNKNOWN\r\n"


def _answer(data: bytes) -> ProxyHeader | ProxyProtocolError | None:
    try:
        return parse_header(data)
    except ProxyProtocolError as error:
        return error


def _check_address(address: tuple[str, int] | None) -> None:
    if address is None:
        return
    ip, port = address
    ipaddress.ip_address(ip)
    assert 0 <= port <= 65535, address


def one_input(data: bytes) -> None:
    answer = _answer(data)
    if isinstance(answer, ProxyProtocolError):
        return
    if answer is None:
        return  # more bytes needed: the prefix checks below cover what a longer input says
    header = answer
    assert 0 < header.length <= len(data), (header, len(data))
    assert header.length <= (MAX_V2_HEADER if header.version == 2 else V1_MAX_HEADER), header
    assert header.version in (1, 2), header
    _check_address(header.source)
    _check_address(header.destination)
    assert _answer(data[: header.length]) == header  # the bytes behind it play no part
    for cut in range(header.length):  # every prefix of the header waits for more
        assert _answer(data[:cut]) is None, (cut, header)
    assert header.peer(REAL) == (header.source or REAL)
