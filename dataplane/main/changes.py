"""Changing the routing state: main's own state first, then every worker.

A change is dispatched into main's `ConfigState` (a refused change touches nothing and no worker
hears of it), then sent to every live worker and gathered within `worker_timeout`; a worker
that fails or does not answer is named in the FAILURE. Activating a listener binds its socket
in main first (a bind error is a FAILURE naming the address and errno, state untouched), then
hands it to each worker over SCM with `activate_listener(from_scm=true)`.

Batches (`load_state`, `reload_configuration`, `saved_state` at startup) are sent to the workers
all at once, in order, then gathered.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable
from dataclasses import dataclass

from dataplane.command.messages import ActivateListener, ListenerType, Request
from dataplane.command.responses import Response
from dataplane.command.scm import Listeners
from dataplane.command.state import ConfigState, StateError
from dataplane.main.errors import ListenerBindError
from dataplane.main.events import EventHub
from dataplane.main.jobs import Job, Reply
from dataplane.main.listeners import ListenerSockets
from dataplane.main.tasks import Gather
from dataplane.main.workers import WorkerPool

log = logging.getLogger("pysozu.main.changes")


class ChangeRefused(Exception):
    """Main's state (or a listening socket) refused the change; nothing was modified."""


@dataclass
class Prepared:
    """A change accepted by main's state: what to send to workers, with which sockets."""

    request: Request
    listeners: Listeners | None = None


class StateKeeper:
    """Main's authoritative state and the listening sockets that go with it."""

    def __init__(self, state: ConfigState, sockets: ListenerSockets, events: EventHub) -> None:
        self.state = state
        self.sockets = sockets
        self.events = events
        self.dirty = False  # changed since the last automatic save

    def apply(self, request: Request) -> Prepared:
        """Apply to main's state (binding sockets as needed); raise `ChangeRefused`."""
        verb = request.verb
        body = request.body
        if verb == "activate_listener":
            return self._activate(request, body)
        try:
            self.state.dispatch(request)
        except StateError as error:
            raise ChangeRefused(
                f"could not dispatch request on the main process state: {error}"
            ) from None
        self.dirty = True
        if verb in ("deactivate_listener", "remove_listener"):
            # Workers close their copies; the port is free once main closes its own.
            self.sockets.close(body.address, body.proxy)
        self.events.emit_for(request)
        return Prepared(request)

    def _activate(self, request: Request, body: ActivateListener) -> Prepared:
        key = (ListenerType(body.proxy), body.address)
        newly_bound = key not in self.sockets
        try:
            self.sockets.bind(body.address, body.proxy)
        except ListenerBindError as error:
            raise ChangeRefused(str(error)) from None
        try:
            self.state.dispatch(request)
        except StateError as error:
            if newly_bound:
                self.sockets.close(body.address, body.proxy)
            raise ChangeRefused(
                f"could not dispatch request on the main process state: {error}"
            ) from None
        self.dirty = True
        self.events.emit_for(request)
        handoff = Request.of(
            activate_listener=ActivateListener(
                address=body.address, proxy=body.proxy, from_scm=True
            )
        )
        return Prepared(handoff, self.sockets.for_scm(only=key))


def send_to_workers(pool: WorkerPool, prepared: Prepared, timeout: float | None) -> Gather:
    return pool.scatter(prepared.request, timeout, listeners=prepared.listeners)


def apply_change(
    keeper: StateKeeper, pool: WorkerPool, request: Request, reply: Reply, timeout: float
) -> Job:
    """One state verb from a client."""
    try:
        prepared = keeper.apply(request)
    except ChangeRefused as error:
        return Response.failure(str(error))
    reply.processing("Processing worker request...")
    gather = yield send_to_workers(pool, prepared, timeout)
    if gather.failures:
        message = (
            f"the change was applied to main but not to every worker: {gather.failure_message()}"
        )
        log.error("%s: %s", request.verb, message)
        return Response.failure(message)
    return Response.ok("Successfully applied request to all workers")


@dataclass
class BatchResult:
    applied: int
    refused: list[str]
    worker_failures: list[str]


BatchJob = Generator[Gather, Gather, BatchResult]


def apply_batch(
    keeper: StateKeeper, pool: WorkerPool, requests: Iterable[Request], timeout: float | None
) -> BatchJob:
    """Apply many changes (use with `yield from`); refused ones are counted, not fatal."""
    sent: list[Gather] = []
    refused: list[str] = []
    for request in requests:
        try:
            prepared = keeper.apply(request)
        except ChangeRefused as error:
            refused.append(f"{request.verb}: {error}")
            continue
        sent.append(send_to_workers(pool, prepared, timeout))
    worker_failures: list[str] = []
    for gather in sent:
        if not gather.done:
            yield gather
        if gather.failures:
            worker_failures.append(f"{gather.request.verb}: {gather.failure_message()}")
    return BatchResult(len(sent), refused, worker_failures)
