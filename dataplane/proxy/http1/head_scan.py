"""Early refusal of a request head that arrives in pieces: each new byte is looked at once.

A head that arrives whole is validated by one regex match (http1/head.py). A head that arrives
in pieces (a big head, a slow client, a slowloris, a TLS client on a clear-text port) is
followed by a `HeadScanner` as it comes, so that a head which can no longer become valid is
refused at once (400) instead of when it is complete or its request timeout ends. `feed` looks
only at the bytes that came since its last call (plus at most the one CR it waits behind), with
C-level regex runs, never at the whole partial head again: a client sending one byte at a time
costs O(n), not O(n^2).

The scanner accepts exactly the heads `http_head._REQUEST` accepts: a token method, one space,
a target of visible ASCII, one space, `HTTP/1.0` or `HTTP/1.1`, CRLF; then `name:value` lines
(token names, values of tab, visible ASCII and bytes >= 0x80) ended by CRLF; then CRLF. So a
refusal here is the refusal the full parse would give, only earlier: bad bytes (NUL, control
bytes, a TLS ClientHello's 0x16), a method that is not a token, a version that is not HTTP/1.x,
a bare LF or a CR without LF, obs-fold, a bad field-name character or a space before the colon.
Offsets are kept relative to the head's first byte, so the session may move the bytes
(`_compact`) between two calls.
"""

from __future__ import annotations

import re

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1.body import Readable

_TOKEN_RUN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
_TARGET_RUN = re.compile(rb"[\x21-\x7e]*")
_VALUE_RUN = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_HEADER_LINES = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_VERSIONS = (b"HTTP/1.1\r\n", b"HTTP/1.0\r\n")
_VERSION_SIZE = 10
_SP, _CR, _LF, _COLON = 0x20, 0x0D, 0x0A, 0x3A

# Where the scanner is: in the request line's method, target or version, or in a header
# line's name (also: at the start of a line, maybe the blank one) or value.
METHOD, TARGET, VERSION, NAME, VALUE = range(5)


class HeadScanner:
    """Follows one request head through its pieces (see the module docstring)."""

    __slots__ = ("line", "position", "stage")

    def __init__(self) -> None:
        self.stage = METHOD
        self.position = 0  # the next byte to look at, from the head's start
        self.line = 0  # where the current header line (or the version) starts

    @property
    def in_request_line(self) -> bool:
        return self.stage < NAME

    def feed(self, buffer: Readable, start: int, end: int) -> int:
        """Look at the head's bytes `buffer[start:end]` not seen yet. Returns the head's length
        (up to and with its blank line) once it is complete, else -1; raises HttpSyntaxError
        as soon as no continuation can make the head valid."""
        at = start + self.position
        stage = self.stage
        while at < end:
            if stage == NAME:
                line = start + self.line
                if at == line:
                    whole = _HEADER_LINES.match(buffer, at, end)
                    assert whole is not None  # the pattern matches the empty string
                    if whole.end() > at:  # whole valid lines at once: one C-level run
                        at = whole.end()
                        self.line = at - start
                        continue
                    if buffer[at] == _CR:  # the blank line, maybe
                        if at + 1 == end:
                            break
                        if buffer[at + 1] == _LF:
                            return at + 2 - start
                        raise HttpSyntaxError("CR without LF in the request head")
                run = _TOKEN_RUN.match(buffer, at, end).end()  # type: ignore[union-attr]
                if run == end:
                    at = end
                    break
                if buffer[run] != _COLON or run == line:
                    raise HttpSyntaxError(_header_error(buffer, line, run, end))
                at, stage = run + 1, VALUE
            elif stage == VALUE:
                run = _VALUE_RUN.match(buffer, at, end).end()  # type: ignore[union-attr]
                if run == end:
                    at = end
                    break
                if buffer[run] != _CR:
                    raise HttpSyntaxError(_header_error(buffer, start + self.line, run, end))
                if run + 1 == end:
                    at = run  # wait for the byte after the CR
                    break
                if buffer[run + 1] != _LF:
                    raise HttpSyntaxError("CR without LF in the request head")
                at, stage = run + 2, NAME
                self.line = at - start
            elif stage == METHOD:
                run = _TOKEN_RUN.match(buffer, at, end).end()  # type: ignore[union-attr]
                if run == end:
                    at = end
                    break
                if buffer[run] != _SP or run == start:
                    raise HttpSyntaxError(_line_error(buffer, start, end))
                at, stage = run + 1, TARGET
            elif stage == TARGET:
                run = _TARGET_RUN.match(buffer, at, end).end()  # type: ignore[union-attr]
                if run == end:
                    at = end
                    break
                if buffer[run] != _SP or buffer[run - 1] == _SP:
                    raise HttpSyntaxError(_line_error(buffer, start, end))
                at, stage = run + 1, VERSION
                self.line = at - start
            else:  # VERSION: at most ten bytes, compared whole each time
                mark = start + self.line
                seen = bytes(buffer[mark : min(end, mark + _VERSION_SIZE)])
                if not (_VERSIONS[0].startswith(seen) or _VERSIONS[1].startswith(seen)):
                    raise HttpSyntaxError(_line_error(buffer, start, end))
                if len(seen) < _VERSION_SIZE:
                    at = end
                    break
                at, stage = mark + _VERSION_SIZE, NAME
                self.line = at - start
        self.position = at - start
        self.stage = stage
        return -1


def _line_error(buffer: Readable, start: int, end: int) -> str:
    line = bytes(buffer[start : min(end, start + 64)]).partition(b"\r")[0].partition(b"\n")[0]
    return f"invalid request line {line!r}"


def _header_error(buffer: Readable, line: int, bad: int, end: int) -> str:
    if buffer[bad] == _LF:
        return "bare LF in request head"
    shown = bytes(buffer[line : min(end, line + 64, bad + 1)])
    return f"invalid header line {shown!r} (bad byte, space before colon or folding)"
