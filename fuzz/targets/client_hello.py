"""The ClientHello server-name reader of TLS passthrough (tls/client_hello.server_name).

The input is the first bytes a client sends on an HTTPS listener with passthrough frontends:
TLS records carrying a ClientHello (whole, cut short, split over records), or anything else.

Expected answers to bad input: "" (no usable name) or None (more bytes needed). Anything
raised is a crash. Properties checked (an AssertionError is a finding too): an answer given
on some bytes is the same whatever bytes follow (the decision never depends on bytes not yet
read); a name is lowercase ASCII hostname characters, at most 255 of them.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable

from dataplane.proxy.tls.client_hello import server_name

MAX_LEN = 4096
DICTIONARY = (b"\x16\x03\x01", b"\x16\x03\x03", b"\x01\x00", b"\x00\x00", b"example.com")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")


def _hello(sni: str | None) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def seeds() -> Iterable[bytes]:
    yield _hello("app.example.com")
    yield _hello(None)
    hello = _hello("split.example")
    body = hello[5:]
    yield b"".join(
        hello[:3] + len(body[at : at + 50]).to_bytes(2, "big") + body[at : at + 50]
        for at in range(0, len(body), 50)
    )


def one_input(data: bytes) -> None:
    answer = server_name(data)
    if answer is None:
        return
    assert isinstance(answer, str), answer
    for tail in (b"\x16\x03\x01\x00\x01\x01", b"\x00" * 7, data[:9]):
        assert server_name(data + tail) == answer, (answer, tail)
    assert len(answer) <= 255, answer
    assert _NAME_CHARS.issuperset(answer), answer
