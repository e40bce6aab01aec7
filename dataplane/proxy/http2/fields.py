"""Checks of decoded HTTP/2 header lists (RFC 9113 8.2 and 8.3), one pass per head.

h2's own inbound validation is turned off: it walks every byte in Python and makes every
malformed head a connection error. These checks use C-level regex matches per field and
make a malformed head a stream error (RST_STREAM), as RFC 9113 8.1.1 asks. A `Malformed`
names the `h2.headers.rejected.<reason>` counter and the RST_STREAM code.
"""

from __future__ import annotations

import re
from typing import Final

from h2.errors import ErrorCodes

from dataplane.proxy.http2.events import Fields

_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
# No NUL, CR or LF anywhere; no whitespace at either end.
_VALUE = re.compile(rb"[^\x00\r\n\t ](?:[^\x00\r\n]*[^\x00\r\n\t ])?")
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_AUTHORITY = re.compile(rb"(?:[A-Za-z0-9\-._~%!$&'()*+,;=]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_PATH = re.compile(rb"/[\x21\x22\x24-\x7e]*")  # visible ASCII, no `#` (no fragment)
_STATUS = re.compile(rb"[1-5][0-9][0-9]")
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_SCHEMES = frozenset((b"http", b"https"))


class Malformed(Exception):
    """A head to refuse with RST_STREAM(`code`); `reason` names its counter."""

    def __init__(self, reason: str, code: int = ErrorCodes.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _content_length(value: bytes, previous: int | None) -> int:
    if not value.isdigit() or len(value) > 18 or not value.isascii():
        raise Malformed("content_length")
    length = int(value)
    if previous is not None:
        raise Malformed("content_length")  # several, even equal: refuse, as HTTP/1.1 does
    return length


def _regular(name: bytes, value: bytes) -> None:
    if _NAME.fullmatch(name) is None:
        raise Malformed("invalid_name")
    if value and _VALUE.fullmatch(value) is None:
        raise Malformed("invalid_value")
    if name in _CONNECTION_SPECIFIC:
        raise Malformed("connection_specific")


Request = tuple[bytes, bytes, bytes, bytes, Fields, int | None]

# A client repeats its heads (the same fields, as CachedDecoder even gives the same objects):
# the result of a check that passed is kept, by the fields, for heads of at most MAX_CHECKED
# bytes (the cache's memory is bounded); a malformed head is checked every time.
MAX_HEADS: Final = 256
MAX_CHECKED: Final = 4096
_checked: dict[tuple[tuple[bytes, bytes], ...], Request] = {}


def parse_request(fields: Fields, max_fields: int) -> Request:
    """(method, scheme, authority, path, regular fields, content-length) of a request head.

    The Host field is taken out: it must agree with `:authority` (case aside) when both are
    present, and stands for it when `:authority` is absent. CONNECT is refused (sozu does
    not tunnel over HTTP/2).
    """
    if len(fields) > max_fields:
        raise Malformed("too_many_fields", ErrorCodes.ENHANCE_YOUR_CALM)
    key = tuple(fields)
    known = _checked.get(key)
    if known is None:
        known, size = _parse_request(fields)
        if size <= MAX_CHECKED:
            if len(_checked) >= MAX_HEADS:
                _checked.clear()
            _checked[key] = known
    method, scheme, authority, path, regular, length = known
    return method, scheme, authority, path, list(regular), length  # a list of its own


def _parse_request(fields: Fields) -> tuple[Request, int]:
    """parse_request's checks; and the size of the head (its names' and values' lengths)."""
    size = 0
    method = scheme = authority = path = host = None
    content_length: int | None = None
    regular: Fields = []
    append = regular.append
    seen_regular = False
    for name, value in fields:
        size += len(name) + len(value)
        if name[:1] == b":":
            if seen_regular:
                raise Malformed("pseudo_after_regular")
            if name == b":method" and method is None:
                method = value
            elif name == b":path" and path is None:
                path = value
            elif name == b":scheme" and scheme is None:
                scheme = value
            elif name == b":authority" and authority is None:
                authority = value
            elif name in (b":method", b":path", b":scheme", b":authority"):
                raise Malformed("duplicate_pseudo")
            else:
                raise Malformed("unknown_pseudo")
            continue
        _regular(name, value)
        seen_regular = True
        if name == b"host":
            if host is not None:
                raise Malformed("duplicate_host")
            host = value
            continue
        if name == b"content-length":
            content_length = _content_length(value, content_length)
        elif name == b"te" and value.lower() != b"trailers":
            raise Malformed("te")
        append((name, value))
    if method is None or _METHOD.fullmatch(method) is None:
        raise Malformed("method")
    if method == b"CONNECT":
        raise Malformed("connect")
    if scheme is None or scheme not in _SCHEMES:
        raise Malformed("scheme")
    if path is None or (
        _PATH.fullmatch(path) is None and not (path == b"*" and method == b"OPTIONS")
    ):
        raise Malformed("path")
    if authority is None:
        if host is None:
            raise Malformed("authority")
        authority = host
    elif host is not None and host.lower() != authority.lower():
        raise Malformed("host_authority_mismatch")
    if b"@" in authority or _AUTHORITY.fullmatch(authority) is None:
        raise Malformed("authority")
    return (method, scheme, authority, path, regular, content_length), size


def parse_response(fields: Fields, max_fields: int) -> tuple[int, Fields, int | None]:
    """(status, regular fields, content-length) of a response head (final or 1xx)."""
    if len(fields) > max_fields:
        raise Malformed("too_many_fields", ErrorCodes.ENHANCE_YOUR_CALM)
    status: bytes | None = None
    content_length: int | None = None
    regular: Fields = []
    for name, value in fields:
        if name[:1] == b":":
            if regular or name != b":status" or status is not None:
                raise Malformed("pseudo")
            status = value
            continue
        _regular(name, value)
        if name == b"content-length":
            content_length = _content_length(value, content_length)
        regular.append((name, value))
    if status is None or _STATUS.fullmatch(status) is None:
        raise Malformed("status")
    return int(status), regular, content_length


def check_trailers(fields: Fields, max_fields: int) -> Fields:
    """The trailer fields, refused if any is a pseudo-field or malformed."""
    if len(fields) > max_fields:
        raise Malformed("too_many_fields", ErrorCodes.ENHANCE_YOUR_CALM)
    for name, value in fields:
        if name[:1] == b":":
            raise Malformed("pseudo_in_trailers")
        _regular(name, value)
    return fields
