"""An asyncio client for the dataplane's command socket.

Same framing as `dataplane.command.channel` (an 8-byte little-endian length counting itself,
then a JSON body) and the same codec. A request is answered by zero or more PROCESSING frames,
then one OK or FAILURE. Main answers pipelined requests in order, so `execute` keeps a window of
requests in flight: a full state push is bounded by the socket, not by round trips.

Errors: `DataplaneUnavailable` when the socket cannot be used (connect refused, closed, a frame
that cannot be read, no answer in time): the connection is closed and the caller reconnects and
resyncs. A FAILURE answer is not an exception: it is returned for the caller to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

from dataplane.command import codec
from dataplane.command.channel import PREFIX, PREFIX_SIZE, frame
from dataplane.command.messages import Request
from dataplane.command.responses import Response, ResponseStatus

MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a list of every frontend may be large; never unbounded
DEFAULT_WINDOW = 8  # main queues at most 16 early requests per client, then disconnects it


class DataplaneError(Exception):
    """Base of the client's errors."""


class DataplaneUnavailable(DataplaneError):
    """The command socket is down or unusable; reconnect and resync."""


class DataplaneClient:
    """One connection to main; one caller at a time (an asyncio lock serialises them)."""

    def __init__(self, path: Path, timeout: float = 30.0, window: int = DEFAULT_WINDOW) -> None:
        self.path = path
        self.timeout = timeout
        self.window = max(1, window)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        await self.close()
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path), limit=MAX_ANSWER_BYTES),
                self.timeout,
            )
        except (OSError, TimeoutError) as error:
            raise DataplaneUnavailable(f"cannot connect to {self.path}: {error}") from None

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def call(self, request: Request) -> Response:
        (response,) = await self.execute([request])
        return response

    async def execute(self, requests: Sequence[Request]) -> list[Response]:
        """Send every request (pipelined) and return their final answers, in order."""
        async with self._lock:
            if not self.connected:
                await self.connect()
            try:
                return await self._execute(requests)
            except DataplaneUnavailable:
                await self.close()
                raise

    async def send_only(self, request: Request) -> None:
        """Send a request whose answers the caller reads itself (`subscribe_events`)."""
        async with self._lock:
            if not self.connected:
                await self.connect()
            assert self._writer is not None
            try:
                self._writer.write(frame(request))
                await self._writer.drain()
            except (OSError, RuntimeError) as error:
                await self.close()
                raise DataplaneUnavailable(f"cannot write to {self.path}: {error}") from None

    async def _execute(self, requests: Sequence[Request]) -> list[Response]:
        writer = self._writer
        assert writer is not None
        answers: list[Response] = []
        in_flight = 0
        try:
            for request in requests:
                writer.write(frame(request))
                in_flight += 1
                if in_flight >= self.window:
                    await writer.drain()
                    answers.append(await self._final_answer())
                    in_flight -= 1
            await writer.drain()
        except (OSError, RuntimeError) as error:
            raise DataplaneUnavailable(f"cannot write to {self.path}: {error}") from None
        for _ in range(in_flight):
            answers.append(await self._final_answer())
        return answers

    async def _final_answer(self) -> Response:
        while True:
            response = await self.read_response()
            if response.status != ResponseStatus.PROCESSING:
                return response

    async def read_response(self) -> Response:
        """The next frame (PROCESSING included), within the timeout."""
        reader = self._reader
        if reader is None:
            raise DataplaneUnavailable("not connected")
        try:
            async with asyncio.timeout(self.timeout):
                (length,) = PREFIX.unpack(await reader.readexactly(PREFIX_SIZE))
                if not PREFIX_SIZE <= length <= MAX_ANSWER_BYTES:
                    raise DataplaneUnavailable(f"answer frame of {length} bytes refused")
                body = await reader.readexactly(length - PREFIX_SIZE)
        except (OSError, asyncio.IncompleteReadError) as error:
            raise DataplaneUnavailable(f"connection to {self.path} lost: {error}") from None
        except TimeoutError:
            raise DataplaneUnavailable(f"no answer from {self.path} in {self.timeout}s") from None
        try:
            return codec.decode(body, Response)
        except codec.DecodeError as error:
            raise DataplaneUnavailable(f"unreadable answer: {error}") from None

    async def wait_closed(self) -> None:
        """Wait (forever) until the peer closes this connection; frames meanwhile are dropped.

        Used on a connection subscribed to events: main closes it only when it goes away.
        """
        reader = self._reader
        if reader is None:
            return
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        await self.close()
