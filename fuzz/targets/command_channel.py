"""Command-channel frames (channel.py) and the messages in them (messages.py, codec.py).

The input (after a control byte) is the byte stream a channel reads from its peer, arriving in
reads of a size the control byte picks; the control byte also picks what the channel expects:
a client's `Request` (main), a worker's `WorkerResponse` (main), main's `Response` (the CLI),
main's `WorkerRequest` or the boot `ServerConfig` (a worker). The stream ends with the peer
closing. Each request that decodes is applied as main applies it: state verbs go through
`ConfigState.dispatch`, which validates every value.

Expected answers to bad input: a `FrameError` in what `receive()` returns (bad length, not
JSON, not the expected message), `FrameTooLarge` or `ChannelClosed` raised by `receive()`
(the owner closes the channel), `StateError` from `dispatch`. Anything else raised is a crash.
Property checked (an AssertionError is a finding too): a message that decodes encodes again
to one that decodes equal (main saves and forwards what it accepted).
"""

from __future__ import annotations

import contextlib
from typing import Any

from dataplane.command import codec
from dataplane.command.channel import (
    PREFIX,
    Channel,
    ChannelClosed,
    FrameError,
    FrameTooLarge,
)
from dataplane.command.messages import STATE_VERBS, Request, ServerConfig, WorkerRequest
from dataplane.command.responses import Response, WorkerResponse
from dataplane.command.state import ConfigState, StateError

MAX_LEN = 8192
MAX_FRAME = 4096  # the channel's max_buffer_size here: larger frames are refused
RECEIVE_TYPES: tuple[type[Any], ...] = (
    Request,
    Request,
    WorkerRequest,
    WorkerResponse,
    Response,
    ServerConfig,
    Request,
    WorkerRequest,
)
READ_SIZES = (MAX_LEN, MAX_LEN, MAX_LEN, 1, 5, 64, 512, MAX_LEN)
DICTIONARY = (
    b'{"request_type":{',
    b'"ADD_CLUSTER":{"cluster_id":"a"}',
    b'"ADD_HTTP_LISTENER":{"address":"127.0.0.1:8080"}',
    b'"ADD_HTTP_FRONTEND":{"cluster_id":"a","address":"127.0.0.1:8080","hostname":"a"}',
    b'"ADD_BACKEND":{"cluster_id":"a","backend_id":"b","address":"127.0.0.1:9000"}',
    b'"path":{"kind":1,"value":"^/a"}',
    b'"address":{"ip":{"inner":{"V4":2130706433}},"port":80}',
    b'{"id":"X","content":',
    b'"status":0',
    b"null",
    b"true",
    b"\x00\x00\x00\x00\x00\x00\x00",
)


class FakeSocket:
    """A non-blocking peer: each read gets what has arrived, then nothing (EAGAIN)."""

    def __init__(self) -> None:
        self.arrived = b""
        self.closed = False

    def recv(self, size: int) -> bytes:
        if not self.arrived:
            if self.closed:
                return b""
            raise BlockingIOError
        data, self.arrived = self.arrived[:size], self.arrived[size:]
        return data

    def getblocking(self) -> bool:
        return False


def frame(body: bytes) -> bytes:
    return PREFIX.pack(PREFIX.size + len(body)) + body


def check_message(message: Any, kind: type[Any], state: ConfigState) -> None:
    again = codec.decode(codec.encode(message), kind)
    assert again == message, (again, message)
    request = message.content if isinstance(message, WorkerRequest) else message
    if isinstance(request, Request):
        repr(request)
        if request.verb in STATE_VERBS:
            with contextlib.suppress(StateError):
                state.dispatch(request)


def one_input(data: bytes) -> None:
    if not data:
        return
    control, stream = data[0], data[1:]
    kind = RECEIVE_TYPES[control & 7]
    size = READ_SIZES[control >> 3 & 7]
    sock = FakeSocket()
    channel: Channel[Any] = Channel(sock, kind, 64, MAX_FRAME)  # type: ignore[arg-type]
    state = ConfigState()
    try:
        for at in range(0, len(stream) + 1, size):
            sock.arrived += stream[at : at + size]
            sock.closed = at + size >= len(stream)
            for message in channel.receive():
                if not isinstance(message, FrameError):
                    check_message(message, kind, state)
    except (ChannelClosed, FrameTooLarge):
        pass


def seeds() -> list[bytes]:
    """A few frames of each kind, as the unit tests send them (sozu's JSON shapes)."""
    cluster = (
        b'{"request_type":{"ADD_CLUSTER":{"cluster_id":"app-1","sticky_session":false,'
        b'"https_redirect":false,"proxy_protocol":null,"load_balancing":0,'
        b'"answer_503":null,"load_metric":0}}}'
    )
    listener = b'{"request_type":{"ADD_HTTP_LISTENER":{"address":"127.0.0.1:8080"}}}'
    front = (
        b'{"request_type":{"ADD_HTTP_FRONTEND":{"cluster_id":"app-1",'
        b'"address":{"ip":{"inner":{"V4":2130706433}},"port":8080},"hostname":"example.com",'
        b'"path":{"kind":0,"value":"/"},"method":null,"position":2,"tags":{}}}}'
    )
    backend = (
        b'{"request_type":{"ADD_BACKEND":{"cluster_id":"app-1","backend_id":"b",'
        b'"address":"10.0.0.1:8080"}}}'
    )
    status = b'{"request_type":{"STATUS":{}}}'
    worker = b'{"id":"SAVE-1","content":' + cluster + b"}"
    answer = b'{"id":"ID-1","status":0,"message":"","content":null}'
    return [
        b"\x00" + frame(listener) + frame(cluster) + frame(front) + frame(backend),
        b"\x29" + frame(status) + frame(b"not json") + PREFIX.pack(3) + frame(b"{}"),
        b"\x02" + frame(worker) + frame(worker.replace(b"SAVE-1", b"SAVE-2")),
        b"\x03" + frame(answer) + frame(answer.replace(b"ID-1", b"ID-2")),
        b"\x04" + frame(b'{"status":1,"message":"w1"}') + frame(b'{"status":0,"content":null}'),
        b"\x05" + frame(b'{"max_connections":10,"buffer_size":16393,"log_level":"debug"}'),
        b"\x00" + PREFIX.pack(1 << 40) + b"x" * 8,
    ]
