"""fields.parse_request keeps the heads it accepted: a repeated head gives what checking it
again would, a malformed one is refused every time, and the cache stays bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hpack import HeaderTuple

from dataplane.proxy.http2 import fields
from dataplane.proxy.http2.fields import Malformed, parse_request

GET = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/static/a"),
    (b"user-agent", b"h2load"),
    (b"content-length", b"0"),
]


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    fields._checked.clear()
    yield
    fields._checked.clear()


def test_a_repeated_head_gives_what_checking_it_again_gives() -> None:
    first = parse_request(list(GET), 100)
    assert len(fields._checked) == 1
    again = parse_request([HeaderTuple(name, value) for name, value in GET], 100)
    fields._checked.clear()
    assert again == first == parse_request(list(GET), 100)
    assert first == (b"GET", b"https", b"example.com", b"/static/a", GET[4:], 0)


def test_each_result_has_a_list_of_its_own() -> None:
    first = parse_request(list(GET), 100)
    first[4].append((b"x-added", b"by the caller"))
    assert parse_request(list(GET), 100)[4] == GET[4:]


@pytest.mark.parametrize(
    "head",
    [
        [*GET[:4], (b"Bad", b"x")],
        [*GET[:4], (b"x-a", b"\x00")],
        [*GET[:4], (b"connection", b"close")],
        [(b":method", b"CONNECT"), *GET[1:]],
        [*GET[:3], (b":path", b"x")],
        [*GET, (b"content-length", b"1")],
    ],
)
def test_a_malformed_head_is_refused_every_time(head: list[tuple[bytes, bytes]]) -> None:
    for _ in range(2):
        with pytest.raises(Malformed):
            parse_request(head, 100)
    assert not fields._checked


def test_the_field_limit_applies_to_a_head_seen_before() -> None:
    parse_request(list(GET), 100)
    with pytest.raises(Malformed, match="too_many_fields"):
        parse_request(list(GET), len(GET) - 1)


def test_the_cache_is_bounded() -> None:
    large = [*GET, (b"x-large", b"v" * fields.MAX_CHECKED)]
    assert parse_request(large, 100)[4][-1] == large[-1]
    assert not fields._checked  # too large to keep
    for n in range(fields.MAX_HEADS + 10):
        parse_request([*GET[:3], (b":path", b"/%d" % n)], 100)
        assert 0 < len(fields._checked) <= fields.MAX_HEADS
