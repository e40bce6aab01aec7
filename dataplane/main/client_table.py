"""The command socket's clients: how many, who goes when it is full, who has been quiet too long.

At most `MAX_CLIENTS` connections are held. A newcomer to a full table takes the slot of the
client silent the longest among those with no request in progress (idle, or stuck in the middle
of a frame); only when every client is busy (a request in progress, or subscribed to events) is
the newcomer refused. So stuck or hostile connections cannot lock `pysozu status` (the chart's
probes) out, and a client that is being answered is never cut for a newcomer. Event
subscriptions are capped at `MAX_SUBSCRIBERS`, so subscribers alone cannot fill the table.

Once a second, clients whose frame stays incomplete or that sit idle too long are cut
(`Client.expired`). Every cut is logged with the client and the reason; refusals are logged at
most once per `REFUSAL_LOG_INTERVAL`, with their count.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections.abc import Callable

from dataplane.command.messages import Request
from dataplane.main.clients import Client
from dataplane.main.loop import EventLoop, Timer
from dataplane.main.peer import peer_of, refusal

log = logging.getLogger("pysozu.main.clients")

MAX_CLIENTS = 1024
MAX_SUBSCRIBERS = MAX_CLIENTS // 2
SWEEP_INTERVAL = 1.0
REFUSAL_LOG_INTERVAL = 10.0


class ClientTable:
    """The live clients by id, with the admission and expiry rules above."""

    def __init__(
        self,
        loop: EventLoop,
        max_buffer_size: int,
        on_request: Callable[[Client, Request], None],
        allowed_uids: list[int] | None = None,
        on_refused: Callable[[Client, Request | None], None] | None = None,
    ) -> None:
        self.loop = loop
        self.allowed_uids = allowed_uids  # command_allowed_uids (None: no allowlist)
        self.on_refused = on_refused
        self.max_buffer_size = max_buffer_size
        self.on_request = on_request
        self.clients: dict[int, Client] = {}
        self.subscribers: set[int] = set()
        self._ids = itertools.count(1)
        self._refused = 0
        self._refusal_logged_at = 0.0
        self._sweeper: Timer | None = None

    def __len__(self) -> int:
        return len(self.clients)

    def values(self) -> list[Client]:
        return list(self.clients.values())

    def start(self) -> None:
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def admit(self, sock: socket.socket) -> Client | None:
        """Serve a new connection, making room if the table is full; None if refused."""
        if len(self.clients) >= MAX_CLIENTS and not self._make_room():
            sock.close()
            self._refused += 1
            now = time.monotonic()
            if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL:
                log.warning(
                    "command socket full: %d clients, all with a request in progress; "
                    "refused %d new connections",
                    MAX_CLIENTS,
                    self._refused,
                )
                self._refusal_logged_at = now
                self._refused = 0
            return None
        client_id = next(self._ids)
        peer = peer_of(sock)
        client = Client(
            client_id,
            sock,
            self.loop,
            self.max_buffer_size,
            self.on_request,
            self._forget,
            peer=peer,
            refusal=refusal(self.allowed_uids, peer),
            on_refused=self.on_refused,
        )
        self.clients[client_id] = client
        return client

    def may_subscribe(self, client: Client) -> bool:
        """Count a subscription; False when `MAX_SUBSCRIBERS` already hold one."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            return False
        self.subscribers.add(client.id)
        return True

    def _make_room(self) -> bool:
        """Cut the client silent the longest among those not busy (refused peers first);
        False if all are busy."""
        quiet = [client for client in self.clients.values() if not client.busy]
        if not quiet:
            return False
        victim = min(quiet, key=lambda client: (client.refusal is None, client.last_activity))
        silent = time.monotonic() - victim.last_activity
        state = (
            f"a frame of which {victim.channel.pending_bytes} bytes arrived"
            if victim.partial_since is not None
            else "no request in progress"
        )
        log.warning(
            "command socket full (%d clients): closing client %d to admit a new one "
            "(silent for %.1f s, %s)",
            MAX_CLIENTS,
            victim.id,
            silent,
            state,
        )
        victim.close()
        return True

    def _sweep(self) -> None:
        now = time.monotonic()
        for client in list(self.clients.values()):
            reason = client.expired(now)
            if reason is not None:
                log.warning("command client %d cut: %s", client.id, reason)
                client.close()
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _forget(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        self.subscribers.discard(client.id)

    def close_all(self, flush_timeout: float) -> None:
        self.stop()
        for client in list(self.clients.values()):
            client.flush_blocking(flush_timeout)
            client.close()
