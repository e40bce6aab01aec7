"""Named counts of what the HTTP/2 core refused or did, for the worker to turn into metrics.

One `H2Counters` is usually shared by every connection of a worker. Names follow sozu's
metrics: `h2.flood.violation.<kind>`, `h2.goaway.{sent,received}.<code>`,
`h2.rst_stream.{sent,received}.<code>`, `h2.headers.rejected.<reason>` (and `.total`),
`h2.streams.reaped.idle`, `h2.streams.refused`, `h2.rst_stream.received.pre_response_start`.
"""

from __future__ import annotations

from h2.errors import ErrorCodes

_CODE_NAMES = {int(code): code.name.lower() for code in ErrorCodes}


def code_name(code: int) -> str:
    """`protocol_error` for 1...; `unknown` for a code RFC 9113 does not define."""
    return _CODE_NAMES.get(code, "unknown")


class H2Counters(dict[str, int]):
    """A plain dict of counts: `bump(name)`; read it like any dict."""

    def bump(self, name: str, count: int = 1) -> None:
        self[name] = self.get(name, 0) + count

    def goaway_sent(self, code: int) -> None:
        self.bump("h2.goaway.sent." + code_name(code))

    def goaway_received(self, code: int) -> None:
        self.bump("h2.goaway.received." + code_name(code))

    def rst_sent(self, code: int) -> None:
        self.bump("h2.rst_stream.sent." + code_name(code))

    def rst_received(self, code: int) -> None:
        self.bump("h2.rst_stream.received." + code_name(code))

    def header_rejected(self, reason: str) -> None:
        self.bump("h2.headers.rejected." + reason)
        self.bump("h2.headers.rejected.total")
