"""HTTP/2 protocol core, sans-IO: bytes in, neutral events and bytes out, on the `h2` library.

`FrontConnection` is the server side of one client connection, `BackConnection` the client
side of one h2c (prior knowledge) backend connection. Both speak the small event vocabulary of
`events`, keep every flood limit of `limits.H2Limits` (sozu's `h2_*` knobs) and count what
they refuse in an `H2Counters`. `translate` turns HTTP/2 heads into HTTP/1.1 heads and back.
Nothing here reads a clock or touches a socket: the caller passes `now` and moves the bytes.
"""

from dataplane.proxy.http2.back import BackConnection
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
from dataplane.proxy.http2.front import FrontConnection
from dataplane.proxy.http2.limits import H2Limits

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
