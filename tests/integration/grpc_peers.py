"""A real grpcio server and client for the gRPC tests, without generated code.

The service `pysozu.test.Echo` carries raw bytes (no protobuf: the serializers are the
identity), which is all a proxy sees anyway:

- `Unary(bytes) -> bytes`: the request back;
- `Repeat(bytes) -> stream bytes`: as many answers as the request's first byte says
  (`bytes([n])` gives n answers, `b"part-0"`...);
- `Concat(stream bytes) -> bytes`: every request joined;
- `Echo(stream bytes) -> stream bytes`: each request back as it comes;
- `Fail(bytes) -> bytes`: aborts with status INVALID_ARGUMENT and message the request's text,
  with trailing metadata `x-detail: <request>`;
- `Sleep(bytes) -> bytes`: sleeps `float(request)` seconds, then answers `b"slept"`; notes in
  `EchoServer.cancelled` when the call was cancelled meanwhile (RST_STREAM reached it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

SERVICE = "pysozu.test.Echo"


def _identity(data: bytes) -> bytes:
    return data


class EchoServer:
    """The service on 127.0.0.1 (h2c, prior knowledge), in threads of this process."""

    def __init__(
        self,
        port: int = 0,
        max_message: int = 16 * 1024 * 1024,
        credentials: grpc.ServerCredentials | None = None,  # TLS (backend TLS tests)
    ) -> None:
        self.cancelled = threading.Event()
        self.calls = 0
        options = [
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
        ]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary, _identity, _identity),
            "Repeat": grpc.unary_stream_rpc_method_handler(self._repeat, _identity, _identity),
            "Concat": grpc.stream_unary_rpc_method_handler(self._concat, _identity, _identity),
            "Echo": grpc.stream_stream_rpc_method_handler(self._echo, _identity, _identity),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail, _identity, _identity),
            "Sleep": grpc.unary_unary_rpc_method_handler(self._sleep, _identity, _identity),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        address = f"127.0.0.1:{port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        return request

    def _repeat(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self.calls += 1
        for n in range(request[0] if request else 0):
            yield b"part-%d" % n

    def _concat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        return b"".join(requests)

    def _echo(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self.calls += 1
        yield from requests

    def _fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        context.set_trailing_metadata((("x-detail", request.decode()),))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.decode())
        raise AssertionError("abort returns never")

    def _sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        deadline = time.monotonic() + float(request or b"0")
        while time.monotonic() < deadline:
            if not context.is_active():
                self.cancelled.set()
                return b""
            time.sleep(0.01)
        return b"slept"


class EchoClient:
    """Calls of the service on a channel (plain h2c, or TLS with a CA and a server name)."""

    def __init__(
        self,
        target: str,
        root_certificates: bytes | None = None,
        server_name: str | None = None,
        max_message: int = 16 * 1024 * 1024,
        authority: str | None = None,
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            ("grpc.enable_retries", 0),
        ]
        if authority is not None:  # the :authority sent (routing), plain or TLS
            options.append(("grpc.default_authority", authority))
        if root_certificates is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            if server_name is not None:
                options.append(("grpc.ssl_target_name_override", server_name))
                options.append(("grpc.default_authority", server_name))
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.secure_channel(target, credentials, options=options)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> EchoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _method(self, kind: Callable[..., Any], name: str) -> Any:
        return kind(
            f"/{SERVICE}/{name}", request_serializer=_identity, response_deserializer=_identity
        )

    def unary(self, data: bytes, timeout: float = 10.0) -> bytes:
        result: bytes = self._method(self.channel.unary_unary, "Unary")(data, timeout=timeout)
        return result

    def repeat(self, count: int, timeout: float = 10.0) -> list[bytes]:
        call = self._method(self.channel.unary_stream, "Repeat")(bytes([count]), timeout=timeout)
        return list(call)

    def concat(self, parts: list[bytes], timeout: float = 10.0) -> bytes:
        result: bytes = self._method(self.channel.stream_unary, "Concat")(
            iter(parts), timeout=timeout
        )
        return result

    def echo(self, parts: list[bytes], timeout: float = 10.0) -> list[bytes]:
        call = self._method(self.channel.stream_stream, "Echo")(iter(parts), timeout=timeout)
        return list(call)

    def fail(self, text: str, timeout: float = 10.0) -> grpc.RpcError:
        try:
            self._method(self.channel.unary_unary, "Fail")(text.encode(), timeout=timeout)
        except grpc.RpcError as error:
            return error
        raise AssertionError("Fail answered")

    def sleep_call(self, seconds: float, timeout: float = 10.0) -> Any:
        """A Sleep call left running (a future): cancel it, or wait for it."""
        return self._method(self.channel.unary_unary, "Sleep").future(
            str(seconds).encode(), timeout=timeout
        )
