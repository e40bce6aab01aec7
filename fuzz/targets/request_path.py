"""The routing path of a request target (request_path): decoding, slashes, dot segments.

The input (after a control byte) is a request target as a head carries it (visible ASCII,
though any byte is tried) or a rule value as a configuration names it (any text).

Expected answer to bad input: `HttpSyntaxError` from `route_path` / `normalize_path`;
`rule_path` and `with_query` never raise (a bad rule value comes back with its reason).
Anything else raised is a crash. Properties checked (an AssertionError is a finding too): a
routing path is a fixed point (normalising it again changes nothing), has no `//`, no `.` or
`..` segment and no query; an EQUALS rule value normalises to what a request spelled the same
way routes on, so the two can meet.
"""

from __future__ import annotations

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.request_path import normalize_path, route_path, rule_path, with_query

MAX_LEN = 512
DICTIONARY = (b"%2e", b"%2E", b"%2f", b"%00", b"%25", b"%7e", b"/../", b"/./", b"//", b"?", b"#")


def check_routing_path(path: str) -> None:
    assert path.startswith("/"), path
    assert "//" not in path and "?" not in path and "#" not in path, path
    segments = path.split("/")
    assert "." not in segments and ".." not in segments, path
    assert route_path(path) == path, path
    assert normalize_path(path) == path, path


def one_input(data: bytes) -> None:
    if not data:
        return
    control, text = data[0], data[1:].decode("latin-1")
    if control & 1:
        value, reason = rule_path(text, prefix=bool(control & 2))
        assert isinstance(value, str) and (reason is None or isinstance(reason, str))
        if reason is None and not control & 2 and text.startswith("/"):
            try:
                routed = route_path(text)
            except HttpSyntaxError:
                return
            assert routed == value, (routed, value)
        return
    with_query("/rewritten", text)
    target = text if control & 2 else "/" + text
    try:
        path = route_path(target)
    except HttpSyntaxError as error:
        assert error.status == 400
        return
    if target.startswith("/"):
        check_routing_path(path)
