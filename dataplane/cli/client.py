"""Talking to main over the command socket: one request, then its answers.

Main answers with PROCESSING frames (progress, events), then exactly one OK or FAILURE. The
timeout bounds the wait for each frame; `None` waits forever (`-t 0`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

from dataplane.command.channel import (
    Channel,
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    FrameError,
)
from dataplane.command.messages import Request
from dataplane.command.responses import Response, ResponseStatus


class CommandError(Exception):
    """Main could not be reached or did not answer; the text says why."""


class CommandClient:
    def __init__(self, path: str, timeout: float | None, max_buffer_size: int) -> None:
        self.path = path
        self.timeout = timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout if timeout is not None else 10.0)
            sock.connect(path)
            sock.settimeout(None)
        except FileNotFoundError:
            sock.close()
            raise CommandError(
                f"no command socket at {path}: is pysozu running (with this config)?"
            ) from None
        except OSError as error:
            sock.close()
            raise CommandError(
                f"cannot connect to the command socket {path}: {error.strerror or error}"
            ) from None
        self.channel: Channel[Response] = Channel(sock, Response, 65536, max_buffer_size)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CommandClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def responses(self, request: Request) -> Iterator[Response]:
        """Send `request`; yield every answer frame, the final OK/FAILURE last."""
        try:
            self.channel.send(request)
        except ChannelError as error:
            raise CommandError(f"could not send the request: {error}") from None
        while True:
            try:
                frame = self.channel.receive_one(self.timeout)
            except ChannelTimeout:
                raise CommandError(
                    f"no answer from main within {self.timeout:g} s (raise it with -t <ms>)"
                ) from None
            except ChannelClosed:
                raise CommandError("main closed the connection before answering") from None
            except ChannelError as error:
                raise CommandError(f"could not read main's answer: {error}") from None
            if isinstance(frame, FrameError):
                raise CommandError(f"main sent an answer this CLI cannot read: {frame.reason}")
            yield frame
            if frame.status != ResponseStatus.PROCESSING:
                return

    def request(
        self, request: Request, on_processing: Callable[[Response], None] | None = None
    ) -> Response:
        """The final answer; PROCESSING frames go to `on_processing`."""
        for response in self.responses(request):
            if response.status != ResponseStatus.PROCESSING:
                return response
            if on_processing is not None:
                on_processing(response)
        raise CommandError("main closed the connection before answering")
