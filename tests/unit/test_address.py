import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress, parse_network


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("localhost:80", "127.0.0.1:80"),
        ("[::1]:443", "[::1]:443"),
        (" 0.0.0.0:0 ", "0.0.0.0:0"),
    ],
)
def test_parse_and_print(text: str, shown: str) -> None:
    assert str(SocketAddress.parse(text)) == shown


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:http",
        "::1:80",
        "[::1]80",
        "example.com:80",
        "1.2.3.4:65536",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        SocketAddress.parse(text)


def test_sozu_wire_shape_v4() -> None:
    address = SocketAddress.parse("127.0.0.1:80")
    assert address.to_wire() == {"ip": {"inner": {"V4": 2130706433}}, "port": 80}


def test_sozu_wire_shape_v6() -> None:
    address = SocketAddress.parse("[::1]:80")
    assert address.to_wire() == {"ip": {"inner": {"V6": {"low": 1, "high": 0}}}, "port": 80}


@pytest.mark.parametrize(
    "wire",
    [
        {"ip": {"inner": {"V4": -1}}, "port": 80},
        {"ip": {"inner": {"V4": 1 << 32}}, "port": 80},
        {"ip": {"inner": {}}, "port": 80},
        {"ip": {"inner": {"V6": {"low": 1}}}, "port": 80},
        {"ip": {"inner": {"V4": 1}}, "port": "80"},
        {"ip": {"inner": {"V4": 1}}, "port": 80, "extra": 1},
        [1, 2],
    ],
)
def test_from_wire_rejects(wire: object) -> None:
    with pytest.raises(ValueError):
        SocketAddress.from_wire(wire)


ips = st.one_of(
    st.integers(0, (1 << 32) - 1).map(ipaddress.IPv4Address),
    st.integers(0, (1 << 128) - 1).map(ipaddress.IPv6Address),
)


@given(ips, st.integers(0, 65535))
def test_round_trips(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    address = SocketAddress(ip, port)
    assert SocketAddress.from_wire(address.to_wire()) == address
    assert SocketAddress.parse(str(address)) == address
    assert hash(SocketAddress.parse(str(address))) == hash(address)


def test_immutable() -> None:
    address = SocketAddress.parse("127.0.0.1:80")
    with pytest.raises(AttributeError):
        address.port = 81  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.168.1.7", "192.168.1.7/32"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_trusted_proxy_networks(text: str, network: str) -> None:
    assert str(parse_network(text)) == network


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("10.0.0.1/8", "has bits set after its prefix length: write 10.0.0.0/8"),
        ("10.0.0.0/33", "is not an IP network"),
        ("edge.example", "is not an IP network"),
        ("", "is not an IP network"),
        (" 10.0.0.0/8", "is not an IP network"),
        ("::ffff:10.0.0.0/104", "is IPv4-mapped"),
    ],
)
def test_bad_trusted_proxy_networks_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_network(text)
