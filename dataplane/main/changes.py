"""Changing the routing state: main's own state first, then every worker.

A change is dispatched into main's `ConfigState` (a refused change touches nothing and no worker
hears of it), then sent to every live worker and gathered within `worker_timeout`; a worker
that fails or does not answer is named in the FAILURE. Activating a listener binds its socket
in main first (a bind error is a FAILURE naming the address and errno, state untouched), then
hands it to each worker over SCM with `activate_listener(from_scm=true)`.

Batches (`load_state`, `reload_configuration`) are sent to the workers all at once, in order,
then gathered. Within a batch main keeps the listening socket of a listener deactivated or
removed until the batch ends, and closes it then only if no listener at that address is active
again: a listener re-created at the same address (a reload that changes what a patch cannot
say, or its protocol) is served on the same socket, never re-bound. Re-binding could not work
anyway: the workers still hold the old socket until they read the deactivation, so the address
is in use; and connections arriving meanwhile wait in the socket's queue instead of being
refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

from dataplane.command.messages import (
    ActivateListener,
    AddCertificate,
    ListenerType,
    ReplaceCertificate,
    Request,
)
from dataplane.command.responses import Response
from dataplane.command.scm import Listeners
from dataplane.command.state import ConfigState, StateError
from dataplane.command.state_rules import expiry_warning
from dataplane.main.errors import ListenerBindError
from dataplane.main.events import EventHub
from dataplane.main.jobs import Job, Reply
from dataplane.main.listeners import Key as ListenerKey
from dataplane.main.listeners import ListenerSockets
from dataplane.main.tasks import Gather
from dataplane.main.workers import WorkerPool

log = logging.getLogger("pysozu.main.changes")


class ChangeRefused(Exception):
    """Main's state (or a listening socket) refused the change; nothing was modified."""


@dataclass
class Prepared:
    """A change accepted by main's state: what to send to workers, with which sockets, and
    what the client should be told beside OK (an expired certificate, loaded anyway)."""

    request: Request
    listeners: Listeners | None = None
    warning: str | None = None


def _warning(request: Request) -> str | None:
    body = request.body
    if isinstance(body, AddCertificate):
        return expiry_warning(body.certificate, body.expired_at)
    if isinstance(body, ReplaceCertificate):
        return expiry_warning(body.new_certificate, body.new_expired_at)
    return None


class StateKeeper:
    """Main's authoritative state and the listening sockets that go with it."""

    def __init__(self, state: ConfigState, sockets: ListenerSockets, events: EventHub) -> None:
        self.state = state
        self.sockets = sockets
        self.events = events
        self.dirty = False  # changed since the last automatic save
        # What the configuration file described when main last read it (start, reload): a
        # reload applies the file's changes since then (reconfigure.py).
        self.file_state = ConfigState()
        self._deferred: set[ListenerKey] | None = None  # sockets to close when a batch ends
        self.on_applied: Callable[[Request], None] | None = None  # main/prober.py

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
        if self.on_applied is not None:
            self.on_applied(request)
        if verb in ("deactivate_listener", "remove_listener"):
            # Workers close their copies; the port is free once main closes its own.
            if self._deferred is not None:
                self._deferred.add((ListenerType(body.proxy), body.address))
            else:
                self.sockets.close(body.address, body.proxy)
        self.events.emit_for(request)
        warning = _warning(request)
        if warning is not None:
            log.warning("%s on %s: %s", verb, getattr(body, "address", "?"), warning)
        return Prepared(request, warning=warning)

    def _activate(self, request: Request, body: ActivateListener) -> Prepared:
        key = (ListenerType(body.proxy), body.address)
        taken_over = self._take_over(key)
        newly_bound = key not in self.sockets
        try:
            self.sockets.bind(body.address, body.proxy)
        except ListenerBindError as error:
            self._give_back(taken_over, key)
            raise ChangeRefused(str(error)) from None
        try:
            self.state.dispatch(request)
        except StateError as error:
            if newly_bound:
                self.sockets.close(body.address, body.proxy)
            self._give_back(taken_over, key)
            raise ChangeRefused(
                f"could not dispatch request on the main process state: {error}"
            ) from None
        if self._deferred is not None:
            self._deferred.discard(key)
        self.dirty = True
        self.events.emit_for(request)
        handoff = Request.of(
            activate_listener=ActivateListener(
                address=body.address, proxy=body.proxy, from_scm=True
            )
        )
        return Prepared(handoff, self.sockets.for_scm(only=key))

    def _take_over(self, key: ListenerKey) -> ListenerKey | None:
        """In a batch: the socket of a listener of another TCP protocol that left this address."""
        kind, address = key
        if self._deferred is None or key in self.sockets or kind == ListenerType.UDP:
            return None
        for old in sorted(self._deferred):
            if old[1] == address and old[0] != ListenerType.UDP and old in self.sockets:
                self._deferred.discard(old)
                self.sockets.move(old, key)
                return old
        return None

    def _give_back(self, taken_over: ListenerKey | None, key: ListenerKey) -> None:
        if taken_over is not None and key in self.sockets:
            self.sockets.move(key, taken_over)
            assert self._deferred is not None
            self._deferred.add(taken_over)

    def defer_closing(self) -> None:
        """From now on, deactivations keep their socket open (a batch's `apply` calls)."""
        self._deferred = set()

    def stop_deferring(self) -> set[ListenerKey]:
        """The sockets kept open since `defer_closing`, for `close_unused` later."""
        deferred, self._deferred = self._deferred or set(), None
        return deferred

    def close_unused(self, deferred: set[ListenerKey]) -> None:
        """Close those of these sockets whose listener is now inactive (or removed)."""
        for kind, address in deferred:
            listener = self.state.listener_table(kind).get(address)
            if listener is None or not listener.active:
                self.sockets.close(address, kind)


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
    if prepared.warning is not None:
        return Response.ok(
            f"Successfully applied request to all workers (warning: {prepared.warning})"
        )
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
    """Apply many changes (use with `yield from`); refused ones are counted, not fatal.

    Listening sockets are closed once the workers answered (see the module's docstring)."""
    sent: list[Gather] = []
    refused: list[str] = []
    keeper.defer_closing()  # for the loop below only: it never yields, batches never overlap
    try:
        with pool.batch():  # each worker reads the whole batch at once (WorkerPool.batch)
            for request in requests:
                try:
                    prepared = keeper.apply(request)
                except ChangeRefused as error:
                    refused.append(f"{request.verb}: {error}")
                    continue
                sent.append(send_to_workers(pool, prepared, timeout))
    finally:
        deferred = keeper.stop_deferring()
    try:
        worker_failures: list[str] = []
        for gather in sent:
            if not gather.done:
                yield gather
            if gather.failures:
                worker_failures.append(f"{gather.request.verb}: {gather.failure_message()}")
    finally:
        keeper.close_unused(deferred)
    return BatchResult(len(sent), refused, worker_failures)
