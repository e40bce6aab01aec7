"""HTTP/2 protocol core, sans-IO: bytes in, neutral events and bytes out, on the `h2` library.

`FrontConnection` is the server side of one client connection, `BackConnection` the client
side of one h2c (prior knowledge) backend connection. Both speak the small event vocabulary of
`events`, keep every flood limit of `limits.H2Limits` (sozu's `h2_*` knobs) and count what
they refuse in an `H2Counters`. `translate` turns HTTP/2 heads into HTTP/1.1 heads and back.
Nothing here reads a clock or touches a socket: the caller passes `now` and moves the bytes.

`FrontConnection` and `BackConnection` (and with them the `h2` library: 1.4 MB of memory) are
imported on first use: a worker serving no HTTP/2 never loads them.
"""

from typing import TYPE_CHECKING, Any

from dataplane.proxy.http2.counters import H2Counters
from dataplane.proxy.http2.events import (
    Body,
    ConnectionClosed,
    Event,
    GoAwayReceived,
    Informational,
    RequestHead,
    ResponseHead,
    Sendable,
    StreamReset,
    Trailers,
)
from dataplane.proxy.http2.limits import H2Limits

if TYPE_CHECKING:
    from dataplane.proxy.http2.back import BackConnection
    from dataplane.proxy.http2.front import FrontConnection

__all__ = [
    "BackConnection",
    "Body",
    "ConnectionClosed",
    "Event",
    "FrontConnection",
    "GoAwayReceived",
    "H2Counters",
    "H2Limits",
    "Informational",
    "RequestHead",
    "ResponseHead",
    "Sendable",
    "StreamReset",
    "Trailers",
]


def __getattr__(name: str) -> Any:
    if name == "FrontConnection":
        from dataplane.proxy.http2.front import FrontConnection

        return FrontConnection
    if name == "BackConnection":
        from dataplane.proxy.http2.back import BackConnection

        return BackConnection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
