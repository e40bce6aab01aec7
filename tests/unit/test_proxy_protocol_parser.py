"""The PROXY protocol header parser (sans-IO): whole, byte by byte, in random splits.

The HAPROXY_* headers were captured from HAProxy 2.6 (`send-proxy-v2`, `send-proxy`, with
`proxy-v2-options unique-id,crc32c`, and a `check-send-proxy` health check) on 127.0.0.1 and
::1; tests/integration/test_proxy_protocol.py runs the same sender live.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.proxy.proxy_protocol.header import (
    MAX_V2_HEADER,
    V1_MAX_HEADER,
    ProxiedPeer,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
    v2_header,
)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
HAPROXY_V2_TCP4 = SIG + b"!\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x8a\xbe\xa7\xcb"
HAPROXY_V2_TCP4_TLVS = (
    SIG + b"!\x11\x00\x1c\x7f\x00\x00\x01\x7f\x00\x00\x01\xa8\x86\xa7\xcb"
    b"\x03\x00\x04\xe69\xac\xb9"  # PP2_TYPE_CRC32C
    b"\x05\x00\x06abc123"  # PP2_TYPE_UNIQUE_ID
)
HAPROXY_V2_TCP6 = (
    SIG + b"!!\x00$" + b"\x00" * 15 + b"\x01" + b"\x00" * 15 + b"\x01" + b"\xe0T\xc3\xdd"
)
HAPROXY_V2_HEALTH_CHECK = SIG + b" \x00\x00\x00"  # LOCAL, UNSPEC, no address
HAPROXY_V1_TCP4 = b"PROXY TCP4 127.0.0.1 127.0.0.1 35524 42955\r\n"
HAPROXY_V1_TCP6 = b"PROXY TCP6 ::1 ::1 57438 50141\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"

REAL = [
    (HAPROXY_V2_TCP4, ProxyHeader(28, 2, False, ("127.0.0.1", 35518), ("127.0.0.1", 42955))),
    (HAPROXY_V2_TCP4_TLVS, ProxyHeader(44, 2, False, ("127.0.0.1", 43142), ("127.0.0.1", 42955))),
    (HAPROXY_V2_TCP6, ProxyHeader(52, 2, False, ("::1", 57428), ("::1", 50141))),
    (HAPROXY_V2_HEALTH_CHECK, ProxyHeader(16, 2, True)),
    (HAPROXY_V1_TCP4, ProxyHeader(44, 1, False, ("127.0.0.1", 35524), ("127.0.0.1", 42955))),
    (HAPROXY_V1_TCP6, ProxyHeader(32, 1, False, ("::1", 57438), ("::1", 50141))),
]


def feed(chunks: list[bytes]) -> tuple[ProxyHeader, bytes]:
    """What a reader does: parse what arrived so far; on "need more", keep it and go on.
    Returns the header and the bytes after it."""
    seen = b""
    for index, chunk in enumerate(chunks):
        seen += chunk
        header = parse_header(seen)
        if header is not None:
            return header, seen[header.length :] + b"".join(chunks[index + 1 :])
    raise AssertionError("incomplete")


@pytest.mark.parametrize(("raw", "expected"), REAL)
@pytest.mark.parametrize("after", [b"", REQUEST, CLIENT_HELLO])
def test_real_headers_whole(raw: bytes, expected: ProxyHeader, after: bytes) -> None:
    assert parse_header(raw + after) == expected
    assert expected.length == len(raw)


@pytest.mark.parametrize(("raw", "expected"), REAL)
def test_real_headers_byte_by_byte(raw: bytes, expected: ProxyHeader) -> None:
    data = raw + REQUEST
    for size in range(len(raw)):
        assert parse_header(data[:size]) is None, size  # a valid beginning: wait
    assert feed([data[i : i + 1] for i in range(len(data))]) == (expected, REQUEST)


@given(st.data())
def test_real_headers_in_random_splits(data: st.DataObject) -> None:
    raw, expected = data.draw(st.sampled_from(REAL))
    after = data.draw(st.sampled_from([b"", REQUEST, CLIENT_HELLO]))
    whole = raw + after
    cuts = sorted(data.draw(st.sets(st.integers(1, len(whole) - 1), max_size=12)))
    chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    assert feed(chunks) == (expected, after)


def ntop(text: str) -> str:
    """An address as `accept()` gives it (and so as the parser does)."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, text))


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)


@given(
    st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)),
    port,
    port,
    st.binary(max_size=200),
    st.integers(1, 64),
)
def test_any_v2_header_round_trips_tlvs_skipped(
    addresses: tuple[str, str], sport: int, dport: int, tlvs: bytes, step: int
) -> None:
    source, destination = (ntop(addresses[0]), sport), (ntop(addresses[1]), dport)
    raw = v2_header(source, destination, tlvs=tlvs)
    expected = ProxyHeader(len(raw), 2, False, source, destination)
    assert parse_header(raw + REQUEST) == expected
    chunks = [(raw + REQUEST)[i : i + step] for i in range(0, len(raw + REQUEST), step)]
    assert feed(chunks) == (expected, REQUEST)


@given(st.one_of(st.tuples(ipv4, ipv4, st.just("TCP4")), st.tuples(ipv6, ipv6, st.just("TCP6"))))
def test_any_v1_header_round_trips(addresses: tuple[str, str, str]) -> None:
    source, destination, proto = addresses
    raw = f"PROXY {proto} {source} {destination} 1 65535\r\n".encode()
    assert len(raw) <= V1_MAX_HEADER
    assert parse_header(raw + REQUEST) == ProxyHeader(
        len(raw), 1, False, (ntop(source), 1), (ntop(destination), 65535)
    )


@given(st.binary(max_size=300))
def test_anything_is_a_header_more_bytes_or_a_protocol_error(data: bytes) -> None:
    try:
        header = parse_header(data)
    except ProxyProtocolError:
        return
    if header is not None:
        assert 0 < header.length <= len(data)


@given(st.sampled_from(REAL), st.binary(min_size=1, max_size=40))
def test_a_valid_prefix_never_errors_and_garbage_after_never_matters(
    real: tuple[bytes, ProxyHeader], after: bytes
) -> None:
    raw, expected = real
    assert parse_header(raw + after) == expected


# -- what a header carries -------------------------------------------------------------------


def test_local_with_a_populated_address_block_carries_no_address() -> None:
    """LOCAL is the load balancer's own connection: its address block is never believed."""
    raw = v2_header(("6.6.6.6", 1), ("10.0.0.1", 80), local=True)
    assert parse_header(raw) == ProxyHeader(len(raw), 2, True)


def test_proxy_over_unspec_carries_no_address() -> None:
    raw = v2_header(None, tlvs=b"\x04\x00\x01\x00")  # a NOOP TLV
    assert parse_header(raw) == ProxyHeader(len(raw), 2, False)


def test_unix_family_falls_back_to_the_peer_and_udp_carries_the_source() -> None:
    unix = v2_header(None, tlvs=b"\x00" * 216, family=0x31)
    assert parse_header(unix) == ProxyHeader(len(unix), 2, False)
    udp = v2_header(("10.1.2.3", 5000), ("10.0.0.1", 53), family=0x12)
    assert parse_header(udp) == ProxyHeader(28, 2, False, ("10.1.2.3", 5000), ("10.0.0.1", 53))


def test_ipv6_sources_are_canonical_and_mapped_ones_kept_for_the_forwarding_code() -> None:
    raw = v2_header(("2001:db8:0:0::1", 443), ("::ffff:10.0.0.1", 80))
    header = parse_header(raw)
    assert header is not None
    assert header.source == ("2001:db8::1", 443)
    assert header.destination == ("::ffff:10.0.0.1", 80)
    v1 = parse_header(b"PROXY TCP6 2001:DB8::0:1 ::1 1 2\r\n")
    assert v1 is not None and v1.source == ("2001:db8::1", 1)


def test_v1_unknown_carries_no_address_whatever_follows() -> None:
    for raw in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
        assert parse_header(raw + REQUEST) == ProxyHeader(len(raw), 1, False)


def test_the_biggest_v2_header_allowed() -> None:
    raw = v2_header(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=b"\x04" * (MAX_V2_HEADER - 28))
    assert len(raw) == MAX_V2_HEADER
    assert parse_header(raw) == ProxyHeader(
        MAX_V2_HEADER, 2, False, ("10.0.0.1", 1), ("10.0.0.2", 2)
    )


# -- refused ---------------------------------------------------------------------------------

REFUSED = {
    "an HTTP request": REQUEST,
    "a TLS ClientHello": CLIENT_HELLO,
    "lowercase v1": b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "POST": b"POST / HTTP/1.1\r\n",
    "PRI": b"PRI * HTTP/2.0\r\n",
    "v2 signature typo": SIG[:11] + b"X" + b" \x00\x00\x00",
    "v2 version 1": SIG + b"\x11\x11\x00\x0c" + b"\x00" * 12,
    "v2 command 2": SIG + b"\x22\x11\x00\x0c" + b"\x00" * 12,
    "v2 family 4": SIG + b"\x21\x41\x00\x0c" + b"\x00" * 12,
    "v2 transport 3": SIG + b"\x21\x13\x00\x0c" + b"\x00" * 12,
    "v2 unspec with a transport": SIG + b"\x21\x01\x00\x00",
    "v2 TCP4 block too short": SIG + b"\x21\x11\x00\x0b" + b"\x00" * 11,
    "v2 TCP6 block too short": SIG + b"\x21\x21\x00\x0c" + b"\x00" * 12,
    "v2 LOCAL with a short TCP4 block": SIG + b"\x20\x11\x00\x04" + b"\x00" * 4,
    "v2 oversized": SIG + b"\x21\x11" + (MAX_V2_HEADER - 15).to_bytes(2, "big"),
    "v2 maximum length": SIG + b"\x21\x11\xff\xff",
    "v1 TCP4 with IPv6": b"PROXY TCP4 ::1 ::1 1 2\r\n",
    "v1 TCP6 with IPv4": b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
    "v1 leading zero in an address": b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n",
    "v1 leading zero in a port": b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
    "v1 port above 65535": b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
    "v1 IPv6 scope": b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    "v1 missing port": b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
    "v1 two spaces": b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
    "v1 unknown protocol": b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
    "v1 bare LF": b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
    "v1 header injection": b"PROXY TCP4 1.2.3.4\r\nX: 1.2.3.4 1 2\r\n",
    "v1 no CRLF in 107 bytes": b"PROXY UNKNOWN " + b"x" * 93,
    "v1 control byte in UNKNOWN": b"PROXY UNKNOWN \x00\r\n",
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
def test_refused(raw: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_header(raw + REQUEST)
    with pytest.raises(ProxyProtocolError):
        feed([raw[i : i + 1] for i in range(len(raw))] + [REQUEST])


@pytest.mark.parametrize(
    ("prefix", "needed"),
    [
        (b"G", 1),  # not a PROXY header: refused at its first byte, no timeout to wait for
        (b"\x16", 1),
        (b"PROXX", 5),
        (SIG[:5] + b"X", 6),
        (SIG + b"\x31", 13),  # the version/command byte, before the length arrives
        (SIG + b"\x21\x51", 14),  # the family byte
        (SIG + b"\x21\x11\x00\x01", 16),  # a block too short for TCP4: before its bytes
        (SIG + b"\x21\x11\x04\x00", 16),  # oversized: refused before its bytes come
    ],
)
def test_refused_as_early_as_the_bytes_allow(prefix: bytes, needed: int) -> None:
    for size in range(needed):
        assert parse_header(prefix[:size]) is None
    with pytest.raises(ProxyProtocolError):
        parse_header(prefix[:needed])


def test_v1_waits_until_its_bound_then_refuses() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (V1_MAX_HEADER - 15)
    assert parse_header(line) is None  # 106 bytes, no CRLF yet
    with pytest.raises(ProxyProtocolError):
        parse_header(line + b"\r")  # 107 bytes: its LF would be the 108th


def test_v1_at_most_107_bytes() -> None:
    longest = b"PROXY UNKNOWN " + b"x" * (V1_MAX_HEADER - 16) + b"\r\n"
    assert len(longest) == V1_MAX_HEADER
    assert parse_header(longest) == ProxyHeader(V1_MAX_HEADER, 1, False)
    too_long = b"PROXY UNKNOWN " + b"x" * (V1_MAX_HEADER - 15) + b"\r\n"
    with pytest.raises(ProxyProtocolError):
        parse_header(too_long)


def test_the_peer_a_connection_gets() -> None:
    """The source, carrying the destination as the public address; else the real peer."""
    header = parse_header(HAPROXY_V2_TCP6)
    assert header is not None
    peer = header.peer(("127.0.0.1", 1))
    assert peer == ("::1", 57428) and isinstance(peer, ProxiedPeer)
    assert peer.public == ("::1", 50141)
    local = parse_header(HAPROXY_V2_HEALTH_CHECK)
    assert local is not None and local.peer(("127.0.0.1", 1)) == ("127.0.0.1", 1)
