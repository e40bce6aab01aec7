"""The server name (SNI) of a TLS ClientHello, read from the first bytes of a connection.

`server_name(data)` looks at what a client sent before any handshake (TLS passthrough,
`tls/passthrough.py`): TLS records of type handshake (22), their fragments joined (a
ClientHello may span several records, and arrive over several TCP segments), then the
ClientHello's fixed fields (legacy version, random, session id, cipher suites, compression
methods) and its extensions, for `server_name` (type 0, RFC 6066 section 3) of type host_name.

It answers:
- `None`: not enough bytes yet (the caller reads more, within its own bound);
- `""`: a complete answer without a usable name (no SNI, not TLS, not a ClientHello,
  malformed, a name that is not an ASCII hostname);
- the name, lowercased and without a trailing dot.

Nothing in `data` makes it raise: lengths are checked against what is there, and any slip
is caught and answered `""`.
"""

from __future__ import annotations

HANDSHAKE = 22  # TLS record content type
CLIENT_HELLO = 1  # handshake message type
SERVER_NAME = 0  # extension type
HOST_NAME = 0  # server name type
MAX_RECORD = (1 << 14) + 2048  # the largest record payload RFC 8446 allows on the wire
MAX_HELLO = 1 << 16  # a ClientHello larger than this is refused (real ones: under 4 KiB)
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


def server_name(data: bytes) -> str | None:
    """The SNI of the ClientHello `data` starts with; None: incomplete; "": none usable."""
    try:
        hello = _handshake_message(data)
        if hello is None or not hello:
            return hello if hello is None else ""
        return _name_in(hello)
    except (IndexError, ValueError):  # defensive: every length is checked before use
        return ""


def _handshake_message(data: bytes) -> bytes | None:
    """The ClientHello body (after its 4-byte header) from the records; None: incomplete,
    b"": not a ClientHello."""
    joined = bytearray()
    offset = 0
    size = len(data)
    wanted = -1  # the ClientHello's length, once its header is in
    while True:
        if wanted >= 0 and len(joined) >= 4 + wanted:
            return bytes(joined[4 : 4 + wanted])
        if offset + 5 > size:
            if offset < size and data[offset] != HANDSHAKE:
                return b""
            if offset + 1 < size and data[offset + 1] != 3:
                return b""
            return None
        if data[offset] != HANDSHAKE or data[offset + 1] != 3:
            return b""
        length = (data[offset + 3] << 8) | data[offset + 4]
        if not 0 < length <= MAX_RECORD:
            return b""
        start = offset + 5
        joined += data[start : start + length]
        if wanted < 0 and len(joined) >= 4:
            if joined[0] != CLIENT_HELLO:
                return b""
            wanted = (joined[1] << 16) | (joined[2] << 8) | joined[3]
            if not 0 < wanted <= MAX_HELLO:
                return b""
        if start + length > size:  # this record is cut: the rest is still to come
            if wanted >= 0 and len(joined) >= 4 + wanted:
                return bytes(joined[4 : 4 + wanted])
            return None
        offset = start + length


def _name_in(hello: bytes) -> str:
    """The host_name of the server_name extension of a complete ClientHello body."""
    end = len(hello)
    at = 2 + 32  # legacy_version, random
    if at >= end:
        return ""
    at += 1 + hello[at]  # legacy_session_id
    if at + 2 > end:
        return ""
    at += 2 + ((hello[at] << 8) | hello[at + 1])  # cipher_suites
    if at >= end:
        return ""
    at += 1 + hello[at]  # legacy_compression_methods
    if at + 2 > end:
        return ""  # no extensions at all (TLS 1.0 style): no SNI
    extensions_end = at + 2 + ((hello[at] << 8) | hello[at + 1])
    if extensions_end > end:
        return ""
    at += 2
    while at + 4 <= extensions_end:
        kind = (hello[at] << 8) | hello[at + 1]
        length = (hello[at + 2] << 8) | hello[at + 3]
        at += 4
        if at + length > extensions_end:
            return ""
        if kind == SERVER_NAME:
            return _host_name(hello[at : at + length])
        at += length
    return ""


def _host_name(extension: bytes) -> str:
    """The first host_name entry of a server_name extension's list, validated."""
    if len(extension) < 2:
        return ""
    end = min(len(extension), 2 + ((extension[0] << 8) | extension[1]))
    at = 2
    while at + 3 <= end:
        kind = extension[at]
        length = (extension[at + 1] << 8) | extension[at + 2]
        at += 3
        if at + length > end:
            return ""
        if kind == HOST_NAME:
            name = extension[at : at + length]
            if not name or len(name) > 255 or not _NAME_BYTES.issuperset(name):
                return ""
            return name.decode("ascii").lower().removesuffix(".")
        at += length
    return ""
