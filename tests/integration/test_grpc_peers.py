"""The gRPC test peers (grpc_peers.py) talk to each other directly: what the proxied gRPC
tests compare against."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_peers import EchoClient, EchoServer

pytestmark = pytest.mark.timeout(60)


def test_every_call_shape_works_without_a_proxy() -> None:
    with EchoServer() as server, EchoClient(f"127.0.0.1:{server.port}") as client:
        assert client.unary(b"hello") == b"hello"
        big = bytes(range(256)) * (8 * 4096)  # 8 MiB
        assert client.unary(big) == big
        assert client.repeat(3) == [b"part-0", b"part-1", b"part-2"]
        assert client.concat([b"a", b"b", b"c"]) == b"abc"
        assert client.echo([b"x", b"y"]) == [b"x", b"y"]
        error = client.fail("bad input")
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "bad input"
        assert ("x-detail", "bad input") in tuple(error.trailing_metadata())


def test_a_cancelled_call_reaches_the_server_as_a_cancel() -> None:
    with EchoServer() as server, EchoClient(f"127.0.0.1:{server.port}") as client:
        call = client.sleep_call(5.0)
        time.sleep(0.3)
        call.cancel()
        assert server.cancelled.wait(5.0)


def test_a_deadline_ends_the_call() -> None:
    with EchoServer() as server, EchoClient(f"127.0.0.1:{server.port}") as client:
        call = client.sleep_call(5.0, timeout=0.3)
        with pytest.raises(grpc.RpcError) as raised:
            call.result()
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
