"""HSTS header edits without sockets: set-if-absent versus replace, exactly once, and which
default answers carry the header."""

from __future__ import annotations

from dataplane.command.messages import HstsConfig
from dataplane.proxy.routing.policy import edited_hsts, set_headers, with_hsts
from dataplane.proxy.routing.route import HSTS_HEADER, IfAbsent, _hsts_edit

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
WITH_STS = b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 0\r\n\r\n"


def sts_lines(head: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"strict-transport")]


def test_if_absent_adds_once_and_keeps_the_backend_header() -> None:
    edit = ((HSTS_HEADER, IfAbsent("max-age=9")),)
    assert sts_lines(set_headers(HEAD, edit)) == [b"Strict-Transport-Security: max-age=9"]
    assert sts_lines(set_headers(WITH_STS, edit)) == [b"Strict-Transport-Security: max-age=1"]


def test_replace_removes_every_backend_header() -> None:
    twice = WITH_STS.replace(b"\r\n\r\n", b"\r\nstrict-transport-security: max-age=2\r\n\r\n")
    edited = set_headers(twice, ((HSTS_HEADER, "max-age=9"),))
    assert sts_lines(edited) == [b"Strict-Transport-Security: max-age=9"]
    assert edited.endswith(b"\r\n\r\n")


def test_edit_follows_force_replace_backend() -> None:
    ((_, kept),) = _hsts_edit(HstsConfig(enabled=True))
    assert type(kept) is IfAbsent and kept == "max-age=31536000"
    ((_, forced),) = _hsts_edit(HstsConfig(enabled=True, max_age=5, force_replace_backend=True))
    assert type(forced) is str and forced == "max-age=5"
    assert _hsts_edit(HstsConfig(enabled=False, max_age=5)) == ()
    assert _hsts_edit(None) == ()


def test_default_answers_carry_hsts_on_3xx_401_5xx_only() -> None:
    answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    for status, carried in ((301, True), (401, True), (503, True), (404, False), (400, False)):
        rendered = with_hsts(answer, status, "max-age=7")
        assert (b"Strict-Transport-Security: max-age=7\r\n" in rendered) is carried, status
    assert with_hsts(answer, 503, "") == answer
    assert edited_hsts((("X-A", "b"), (HSTS_HEADER, "max-age=7"))) == "max-age=7"
    assert edited_hsts(()) is None
