"""One CLI (or operator) connection on the command socket.

Requests are answered one at a time, in order: frames that arrive while a request is being
handled wait in a short queue. A client that floods the queue, sends a frame above the size
limit, or stops reading its answers is disconnected; nobody else notices. So is one that
leaves a frame half sent for `PARTIAL_FRAME_TIMEOUT`, or sits idle (no request in progress,
nothing received) for `IDLE_TIMEOUT`: `expired` says so, the client table cuts it.

A client whose peer `command_allowed_uids` refuses (`peer.py`) gets, for its first frame
whatever it holds, one FAILURE saying so; the connection is closed once it is sent. One that
sends nothing is cut after `REFUSED_GRACE`.
"""

from __future__ import annotations

import logging
import re
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable

from dataplane.command.channel import Channel, ChannelError, FrameError, FrameTooLarge
from dataplane.command.messages import Request
from dataplane.command.responses import Response, ResponseContent
from dataplane.main.audit_record import ulid
from dataplane.main.loop import EventLoop
from dataplane.main.peer import Peer

log = logging.getLogger("pysozu.main.clients")

CLIENT_BUFFER_SIZE = 4096
MAX_QUEUED_REQUESTS = 16
# Frames queued while the client reads nothing (bounds memory for a stalled subscriber).
MAX_STALLED_FRAMES = 256
# The CLI and the operator write a frame in one go on a local socket: even the largest
# (`max_command_buffer_size`, 2 MB by default) arrives within milliseconds. Ten seconds leaves
# room for a machine under heavy load and still frees a slot held by a stuck or hostile writer
# soon. sozu has no key for it (nor any timeout on its command socket): a constant.
PARTIAL_FRAME_TIMEOUT = 10.0
# Idle: connected, no request in progress, nothing received. The operator keeps one connection
# open between reconciliations and reads the whole state every 300 s, so 15 minutes never cuts
# it, while forgotten connections do not hold slots for hours. Under pressure (a full table)
# the longest-silent idle client goes at once (`client_table.py`).
IDLE_TIMEOUT = 900.0
# A refused peer's client writes its request at once; one that does not is cut soon.
REFUSED_GRACE = 5.0

Incoming = Request | FrameError
_UNKNOWN_VERB = re.compile(r"unknown field `([^`]*)` - at `\$\.request_type`")


def describe(reason: str) -> str:
    """A frame error in the words of the command protocol."""
    unknown = _UNKNOWN_VERB.search(reason)
    if unknown:
        return f"unknown verb {unknown.group(1)}"
    return reason


class Client:
    def __init__(
        self,
        client_id: int,
        sock: socket.socket,
        loop: EventLoop,
        max_buffer_size: int,
        on_request: Callable[[Client, Request], None],
        on_close: Callable[[Client], None],
        peer: Peer | None = None,
        refusal: str | None = None,
        on_refused: Callable[[Client, Request | None], None] | None = None,
    ) -> None:
        sock.setblocking(False)
        self.id = client_id
        self.peer = peer if peer is not None else Peer()
        self.session = ulid()  # names this connection in every audit record it causes
        self.refusal = refusal  # set: this peer may not send commands (command_allowed_uids)
        self._on_refused = on_refused
        self.closing = False  # close once what is queued for the client is sent
        self.loop = loop
        self.channel: Channel[Request] = Channel(sock, Request, CLIENT_BUFFER_SIZE, max_buffer_size)
        self.queue: deque[Incoming] = deque()
        self.busy = False
        self.closed = False
        self._stalled_frames = 0
        self.last_activity = time.monotonic()  # last byte received or request finished
        self.partial_since: float | None = None  # when the frame being received began
        self._on_request = on_request
        self._on_close = on_close
        loop.add(self.channel, selectors.EVENT_READ, self._on_ready)

    # -- answers (the `Reply` protocol) -------------------------------------------------------

    def processing(self, message: str, content: ResponseContent | None = None) -> None:
        self.send(Response.processing(message, content))

    def send(self, response: Response) -> None:
        if self.closed:
            return
        try:
            self.channel.send(response)
        except FrameTooLarge as error:
            self.channel.send(Response.failure(f"the answer is too large to send: {error}"))
        self._stalled_frames += 1
        self._flush()

    def finish(self, response: Response | None) -> None:
        """The current request ended with `response` (None: it streams forever)."""
        if response is None:
            return
        self.send(response)
        self.busy = False
        self.last_activity = time.monotonic()
        self.pump()

    def pump(self) -> None:
        if self.refusal is not None:
            if self.queue and not self.closing:
                self._refuse(self.queue.popleft())
            return
        while not self.busy and self.queue and not self.closed:
            item = self.queue.popleft()
            if isinstance(item, FrameError):
                self.send(Response.failure(f"bad request: {describe(item.reason)}"))
                continue
            self.busy = True
            self._on_request(self, item)

    def _refuse(self, item: Incoming) -> None:
        """Answer the one frame of a refused peer, then close (nothing else is read)."""
        assert self.refusal is not None
        self.queue.clear()
        self.closing = True
        if self._on_refused is not None:
            self._on_refused(self, item if isinstance(item, Request) else None)
        self.send(Response.failure(self.refusal))

    # -- I/O ----------------------------------------------------------------------------------

    def _on_ready(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush()
        if mask & selectors.EVENT_READ and not self.closed:
            self._read()

    def _read(self) -> None:
        if self.closing:  # a refused peer: its answer is on its way, nothing more is read
            return
        try:
            incoming = self.channel.receive()
        except FrameTooLarge as error:
            log.warning("client %d: %s; closing the connection", self.id, error)
            self.close()
            return
        except ChannelError:
            self.close()
            return
        now = time.monotonic()
        self.last_activity = now
        if not self.channel.pending_bytes:
            self.partial_since = None
        elif self.partial_since is None or incoming:  # a new frame began
            self.partial_since = now
        self.queue.extend(incoming)
        if len(self.queue) > MAX_QUEUED_REQUESTS:
            log.warning("client %d sent too many requests without reading answers", self.id)
            self.close()
            return
        self.pump()

    def _flush(self) -> None:
        if self.closed:
            return
        try:
            self.channel.flush()
        except ChannelError:
            self.close()
            return
        if not self.channel.wants_write:
            self._stalled_frames = 0
            if self.closing:
                self.close()
                return
        elif self._stalled_frames > MAX_STALLED_FRAMES:
            log.warning("client %d does not read its answers; closing the connection", self.id)
            self.close()
            return
        # A client being closed is not read any more (its answer is all it gets).
        events = 0 if self.closing else selectors.EVENT_READ
        if self.channel.wants_write:
            events |= selectors.EVENT_WRITE
        self.loop.modify(self.channel, events, self._on_ready)

    def expired(self, now: float) -> str | None:
        """Why this client should be cut now (None: it may stay)."""
        if self.refusal is not None and now - self.last_activity > REFUSED_GRACE:
            return f"a refused peer (uid {self.peer.uid}) sent no request"
        if self.partial_since is not None and now - self.partial_since > PARTIAL_FRAME_TIMEOUT:
            return (
                f"a frame left incomplete for {now - self.partial_since:.0f} s "
                f"({self.channel.pending_bytes} bytes received)"
            )
        if not self.busy and not self.queue and now - self.last_activity > IDLE_TIMEOUT:
            return f"idle for {now - self.last_activity:.0f} s"
        return None

    def flush_blocking(self, timeout: float) -> None:
        """Best effort before main exits: push out what is left."""
        if self.closed or not self.channel.wants_write:
            return
        try:
            self.channel.sock.settimeout(timeout)
            self.channel.flush()
        except (ChannelError, OSError):
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove(self.channel)
        self.channel.close()
        self._on_close(self)
