"""The neutral events an HTTP/2 connection hands to its session (both directions).

They say what a peer did in terms a mux can carry to an HTTP/1.1 or an HTTP/2 peer: a head
(pseudo-header fields taken out and checked), body bytes, trailers, a reset, a GOAWAY, a
window that opened. Header fields are `(name, value)` byte pairs with lowercase names, in wire
order; a request's `cookie` crumbs stay separate (RFC 9113 8.2.3: `translate` joins them for
HTTP/1.1). `Body.data` must be acknowledged with `consumed()` once forwarded: that is what
gives the peer its flow-control window back.
"""

from __future__ import annotations

from dataclasses import dataclass

Fields = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestHead:
    """A client opened a stream with a well-formed request head."""

    stream_id: int
    method: bytes
    scheme: bytes
    authority: bytes  # `:authority`, else the Host field (which is then not in `headers`)
    path: bytes
    headers: Fields  # regular fields only; no Host, no connection-specific field
    end_stream: bool  # no body follows
    content_length: int | None = None


@dataclass(slots=True)
class ResponseHead:
    """A backend answered a stream (final status)."""

    stream_id: int
    status: int
    headers: Fields
    end_stream: bool
    content_length: int | None = None


@dataclass(slots=True)
class Informational:
    """A backend sent a 1xx head (100 Continue, 103 Early Hints) before its final one."""

    stream_id: int
    status: int
    headers: Fields


@dataclass(slots=True)
class Body:
    """Body bytes of a stream; call `consumed(stream_id, len(data))` once they are forwarded."""

    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(slots=True)
class Trailers:
    """Trailer fields; they always end the stream."""

    stream_id: int
    headers: Fields


@dataclass(slots=True)
class StreamReset:
    """A stream ended abnormally: reset by the peer (`remote`) or by us (refused, reaped...)."""

    stream_id: int
    code: int  # an HTTP/2 error code (h2.errors.ErrorCodes)
    remote: bool


@dataclass(slots=True)
class Sendable:
    """The peer opened flow-control window: `stream_id` may send more (0: every stream)."""

    stream_id: int


@dataclass(slots=True)
class GoAwayReceived:
    """The peer will accept no new stream; streams above `last_stream_id` were not processed
    (a back connection reports each of those as a StreamReset(REFUSED_STREAM) too)."""

    code: int
    last_stream_id: int
    debug: bytes


@dataclass(slots=True)
class ConnectionClosed:
    """The connection is over (we sent a GOAWAY for an error, or the graceful deadline
    passed): send what `data_to_send()` holds, then close the socket. Every open stream is
    gone with it."""

    code: int
    reason: str


Event = (
    RequestHead
    | ResponseHead
    | Informational
    | Body
    | Trailers
    | StreamReset
    | Sendable
    | GoAwayReceived
    | ConnectionClosed
)
