"""HTTP/2 limits of a running pysozu, probed with raw frames over TLS.

Ports sozu's flood, concurrency, reaper and shutdown scenarios (h2_tests, h2_correctness_tests,
h2_security_tests; mapping: docs/testing-h2.md): floods end the connection with
ENHANCE_YOUR_CALM, streams over MAX_CONCURRENT_STREAMS are refused one by one, idle and
window-stalled streams are reaped while a slow but moving upload survives, DATA on refused
streams still gives the connection window back, the HPACK bomb and oversized heads are refused,
a client's GOAWAY lets its streams finish and the shutdown deadline bounds a soft stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from h2_support import EchoBackend, tls_config
from h2_wire import (
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    PING,
    PRIORITY,
    REFUSED_STREAM,
    SETTINGS,
    Wire,
    block,
    frame,
    request_fields,
    rst_stream,
    settings,
    window_update,
)
from hpack import Encoder
from https_support import Pki

pytestmark = pytest.mark.timeout(120)

LISTENER = """h2_max_concurrent_streams = 3
h2_stream_idle_timeout_seconds = 1
h2_graceful_shutdown_deadline_seconds = 1
"""


@pytest.fixture
def proxy(pysozu: Any, tmp_path: Path) -> Iterator[tuple[int, Pki, Any]]:
    echo = EchoBackend()
    try:
        pki = Pki(tmp_path)
        port = pysozu.free_port()
        config = tls_config(port, echo.port, pki.issue("example.com"), LISTENER)
        instance = pysozu.start(config, workers=1)
        yield port, pki, instance
    finally:
        echo.stop()


def _post(stream: int, path: str = "/upload") -> bytes:
    return frame(HEADERS, END_HEADERS, stream, block(request_fields(path, "POST")))


def _get(stream: int, path: str = "/") -> bytes:
    return frame(HEADERS, END_HEADERS | END_STREAM, stream, block(request_fields(path)))


_OPEN = _post(1)
FLOODS: dict[str, list[bytes]] = {
    "ping": [frame(PING, 0, 0, b"%08d" % n) for n in range(300)],
    "settings": [frame(SETTINGS, 0, 0, settings((4, 65535))) for _ in range(300)],
    "empty data": [_OPEN] + [frame(DATA, 0, 1, b"") for _ in range(300)],
    "window_update on stream 0": [window_update(0, 1) for _ in range(300)],
    "continuation": [frame(HEADERS, END_STREAM, 1, block(request_fields()))]
    + [frame(CONTINUATION, 0, 1, b"") for _ in range(100)],
    "priority": [frame(PRIORITY, 0, 2 * n + 1, b"\0\0\0\0\x10") for n in range(2000)],
    "rst_stream of streams already answered": [
        part for n in range(1, 20_001, 2) for part in (_get(n, "/status/204"), rst_stream(n))
    ][:4000],
}


def test_floods_end_the_connection_with_enhance_your_calm(proxy: tuple[int, Pki, Any]) -> None:
    port, pki, _ = proxy
    calm: dict[str, object] = {}
    for name, frames in FLOODS.items():
        wire = Wire(port, pki.client_context())
        try:
            for at in range(0, len(frames), 50):
                if not wire.send(*frames[at : at + 50]):
                    break
            calm[name] = wire.goaway(timeout=10)
        finally:
            wire.close()
    assert {name: got and got[1] for name, got in calm.items()} == dict.fromkeys(
        FLOODS, ENHANCE_YOUR_CALM
    ), calm
    wire = Wire(port, pki.client_context())  # others are served on
    try:
        wire.send(_get(1))
        assert wire.response(1)[0] == 200
    finally:
        wire.close()


def test_streams_over_the_limit_are_refused_not_the_connection(
    proxy: tuple[int, Pki, Any],
) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_post(1), _post(3), _post(5), _post(7))  # limit 3: the 4th is refused
        assert wire.reset_code(7) == REFUSED_STREAM
        for stream in (1, 3, 5):
            wire.send(frame(DATA, END_STREAM, stream, b"x" * stream))
            status, _, body = wire.response(stream)
            assert status == 200 and json.loads(body)["length"] == stream
        wire.send(_get(9))  # a slot is free again
        assert wire.response(9)[0] == 200
        assert not [f for f in wire.received if f.kind == GOAWAY]
    finally:
        wire.close()


def test_data_on_refused_streams_gives_the_connection_window_back(
    proxy: tuple[int, Pki, Any],
) -> None:
    """1.25 MiB of DATA on refused streams (more than the 1 MiB connection window): unless the
    proxy credits it back, the upload that follows on an accepted stream stalls."""
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_post(1), _post(3), _post(5))
        piece = b"o" * 16_384
        for stream in range(7, 27, 2):  # 10 refused streams, 8 frames each
            wire.send(_post(stream), *[frame(DATA, 0, stream, piece)] * 8)
        upload = b"u" * 200_000
        frames = [frame(DATA, 0, 1, upload[at : at + 16_384]) for at in range(0, 200_000, 16_384)]
        wire.send(*frames, frame(DATA, END_STREAM, 1, b""))
        status, _, body = wire.response(1, timeout=20)
        assert status == 200 and json.loads(body)["length"] == len(upload)
    finally:
        wire.close()


def test_idle_and_window_stalled_streams_are_reaped_a_moving_upload_is_not(
    proxy: tuple[int, Pki, Any],
) -> None:
    port, pki, _ = proxy
    # the client's stream window is 0: the response can never flow
    wire = Wire(port, pki.client_context(), client_settings=settings((4, 0)))
    try:
        wire.send(_post(1, "/idle"), _get(3, "/big/100000"))
        started = time.monotonic()
        assert wire.reset_code(1, timeout=6) == CANCEL  # idle upload
        assert wire.reset_code(3, timeout=6) == CANCEL  # stalled download
        assert time.monotonic() - started < 5
        wire.send(_post(5, "/trickle"))
        for _ in range(8):  # 2.4 s of upload, 0.3 s apart: never idle for 1 s
            time.sleep(0.3)
            wire.send(frame(DATA, 0, 5, b"t" * 10))
        wire.send(frame(DATA, END_STREAM, 5, b""), window_update(5, 1 << 20))
        status, _, body = wire.response(5)
        assert status == 200 and json.loads(body)["length"] == 80
    finally:
        wire.close()


def test_an_hpack_bomb_and_oversized_heads_are_refused(proxy: tuple[int, Pki, Any]) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        # 3 KB in the dynamic table once, then referenced 40 times: 120 KB decoded > 64 KiB
        encoder = Encoder()
        first = encoder.encode([*request_fields("/seed"), (b"x-bomb", b"b" * 3000)])
        bomb = encoder.encode([*request_fields("/bomb"), *[(b"x-bomb", b"b" * 3000)] * 40])
        assert len(bomb) < 200
        wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, first))
        assert wire.response(1)[0] == 200
        wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, bomb))
        refused = wire.reset_code(3, timeout=3)
        goaway = wire.goaway(timeout=0.5)
        assert refused is not None or (goaway is not None and goaway[1] == ENHANCE_YOUR_CALM)
    finally:
        wire.close()
    wire = Wire(port, pki.client_context())
    try:  # more fields than h2_max_header_fields (128): that stream only
        many = [(b"x-f%d" % n, b"v") for n in range(200)]
        wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block([*request_fields(), *many])))
        assert wire.reset_code(1) is not None
        wire.send(_get(3))
        assert wire.response(3)[0] == 200
    finally:
        wire.close()


def test_a_client_goaway_lets_its_streams_finish(proxy: tuple[int, Pki, Any]) -> None:
    port, pki, _ = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_get(1, "/big/200000"), frame(GOAWAY, 0, 0, b"\0\0\0\0\0\0\0\0"))
        wire.send(window_update(0, 1 << 20), window_update(1, 1 << 20))
        status, _, body = wire.response(1)
        assert status == 200 and len(body) == 200_000
    finally:
        wire.close()


def test_the_shutdown_deadline_ends_a_stream_that_never_finishes(
    proxy: tuple[int, Pki, Any],
) -> None:
    port, pki, instance = proxy
    wire = Wire(port, pki.client_context())
    try:
        wire.send(_post(1, "/never-ends"))
        assert wire.alive()
        started = time.monotonic()
        stopping = subprocess.Popen(
            [sys.executable, "-m", "dataplane", "-c", str(instance.config_path), "shutdown"]
        )
        first_goaway = None
        while time.monotonic() - started < 15:
            goaways = [f for f in wire.received if f.kind == GOAWAY]
            if first_goaway is None and goaways:
                first_goaway = time.monotonic()
            if len(goaways) >= 3 or wire.closed:  # sozu's double GOAWAY, then the deadline's
                break
            if wire.wait(lambda f: False, timeout=0.2) is None and not wire.closed:
                wire.send(frame(DATA, 0, 1, b"k"))  # keep the stream from idling out
        assert first_goaway is not None, wire.received
        # the deadline (1 s) counts from the first GOAWAY; the default would be 5 s
        assert time.monotonic() - first_goaway < 3.5, wire.received
        assert [f for f in wire.received if f.kind == 3 and f.stream == 1] == []
        wire.wait(lambda f: False, timeout=10)  # then the connection closes
        assert wire.closed
        assert stopping.wait(30) == 0
    finally:
        wire.close()
