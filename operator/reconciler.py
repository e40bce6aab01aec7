"""One debounced task: render the desired state, diff it against what is applied, push the rest.

- Every watch event calls `trigger()`; the task waits until events stop for `debounce` seconds
  (at most `max_delay` after the first one), so a burst costs one render and one push.
- Equal states send nothing. Endpoint changes diff to backend requests only.
- A FAILURE answer becomes an Event on the Ingress the request came from; the push is retried
  with exponential back-off (the next diff holds exactly what is still missing).
- The dataplane going away (socket closed, seen at once on an event subscription) forgets the
  applied state and makes the controller unready: the next push starts with a resync (the
  dataplane's own state file) and sends whatever it lacks (all of it after a restart); ready
  again once it is all there. A periodic resync catches hand-made drift.
- The command socket appearing (a dataplane starting, or back) cuts any back-off short: the
  push starts at once.
- Requests are pipelined (a few in flight); a first sync of thousands goes as state files
  (`load_state`), which main applies without a round trip per request.
- A push that removes and adds (a changed route, a Service's endpoints replaced) goes as one
  state file too: main hands a `load_state` batch to each worker in one write, and a worker
  applies all of it before it serves again, so no request sees the route gone or the cluster
  empty in between (sent one by one, each removal reached the workers before its addition).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from ingress_operator.dataplane_client import DataplaneClient, DataplaneError
from ingress_operator.dataplane_state import (
    DesiredState,
    fetch_state,
    is_swap,
    load_in_bulk,
    owned_view,
)
from ingress_operator.events import EventRecorder
from ingress_operator.model import Snapshot
from ingress_operator.render import Problem, Rendered, render
from ingress_operator.settings import Settings
from ingress_operator.supervision import Backoff, Heartbeat

from dataplane.command.messages import Empty, Request
from dataplane.command.responses import ResponseStatus
from dataplane.command.state import ConfigState, StateError

log = logging.getLogger("pysozu.ingress.reconciler")

OnPushed = Callable[[Rendered, Snapshot], Awaitable[None]]
# A round's outcome for metrics: "pushed" (sent something), "unchanged", "failed"; seconds.
OnRound = Callable[[str, float], None]
# From this many requests on (a first sync), a push goes as state files through `load_state`.
BULK_REQUESTS = 500
BULK_CHUNK = 1000
IDLE_BEAT = 10.0  # idle loops still beat this often
# /healthz: stuck after this long without a beat (a push of thousands, or 30 s timeouts of a
# silent dataplane, are progress too slow to beat within; this bound is well above them).
STALL_AFTER = 300.0


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], Snapshot | None],
        events: EventRecorder,
        on_pushed: OnPushed | None = None,
        max_delay: float = 2.0,
        resync_interval: float = 300.0,
    ) -> None:
        self.settings = settings
        self.snapshot = snapshot
        self.events = events
        self.on_pushed = on_pushed
        self.max_delay = max_delay
        self.resync_interval = resync_interval
        self.client = DataplaneClient(settings.command_socket)
        self.ready = False  # the first full state has been pushed
        self.last_push: Counter[str] = Counter()  # verbs of the last push (for logs and tests)
        self._applied: ConfigState | None = None  # None: unknown, resync first
        self._desired = DesiredState()
        self._in_sync = False  # the dataplane holds the desired state as last rendered
        self._wake = asyncio.Event()
        self._dataplane_up = asyncio.Event()  # the command socket answered: retry at once
        self._backoff = Backoff()
        # For metrics (metrics.py): each round's outcome, the latest rendering, refusals.
        self.on_round: OnRound | None = None
        self.last_rendered: Rendered | None = None
        self.pushed: Rendered | None = None  # the last rendering the dataplane took whole
        self.refused_requests = 0

    def trigger(self) -> None:
        self._wake.set()

    def dataplane_lost(self) -> None:
        self._applied = None
        self._in_sync = False
        self.trigger()

    # -- the loop -----------------------------------------------------------------------------

    def dataplane_restarted(self) -> None:
        """The dataplane went away: it may come back empty, so unready until pushed again."""
        if self.ready:
            log.warning("unready until the state is pushed to the dataplane again")
        self.ready = False
        self.dataplane_lost()

    async def run(self, heartbeat: Heartbeat | None = None) -> None:
        beat = heartbeat or Heartbeat("reconciler", STALL_AFTER)
        while True:
            beat.beat()
            try:
                async with asyncio.timeout(IDLE_BEAT):
                    await self._wake.wait()
            except TimeoutError:
                continue
            await self._debounce()
            self._dataplane_up.clear()
            started = time.monotonic()
            ok = await self.reconcile_once()
            if self.on_round is not None:
                result = "failed" if not ok else "pushed" if self.last_push else "unchanged"
                self.on_round(result, time.monotonic() - started)
            if ok:
                self._backoff.reset()
            else:
                delay = self._backoff.next()
                log.info("retrying in %.1fs (at once if the dataplane comes up)", delay)
                beat.beat()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._dataplane_up.wait()
                self.trigger()

    async def _debounce(self) -> None:
        deadline = time.monotonic() + self.max_delay
        while True:
            self._wake.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(
                    self._wake.wait(), min(self.settings.debounce_seconds, remaining)
                )
            except TimeoutError:
                return

    async def reconcile_once(self) -> bool:
        """One render + diff + push; True when the dataplane now holds the desired state."""
        started = time.monotonic()
        snapshot = self.snapshot()
        if snapshot is None:  # an empty state now would remove every route: wait for the indices
            return True
        rendered = self.last_rendered = render(snapshot, self.settings.render)
        rendered_at = time.monotonic()
        uids = {key: ingress.uid for key, ingress in snapshot.ingresses.items()}
        try:
            if self._applied is None:
                scratch = self.settings.command_socket.parent
                actual = await fetch_state(self.client, scratch)
                self._applied = owned_view(actual, self.settings.render)
                self._desired.reset()  # listeners are adopted from the dataplane at a rebuild
                self._in_sync = False
                log.info("resynced with the dataplane: %r", self._applied)
            desired, rejected, changed = self._desired.update(
                rendered, self._applied, self.settings.render
            )
            if not changed and self._in_sync:
                self.last_push = Counter()
                self.events.record(rendered.problems, uids)
                return True
            self._in_sync = False
            diffed_at = time.monotonic()
            failures, refused = await self._push(self._applied, desired, rendered)
        except DataplaneError as error:
            log.warning("dataplane: %s", error)
            self._applied = None
            self.events.record(rendered.problems, uids)
            return False
        self.events.record([*rendered.problems, *rejected, *failures], uids)
        if self.last_push:
            done = time.monotonic()
            log.info(
                "pushed %s in %.0f ms (render %.0f ms, state %.0f ms, send %.0f ms)",
                dict(self.last_push),
                (done - started) * 1000,
                (rendered_at - started) * 1000,
                (diffed_at - rendered_at) * 1000,
                (done - diffed_at) * 1000,
            )
        if refused or self._applied is None:
            return False
        self._in_sync = True
        self.ready = True
        self.pushed = rendered
        if self.on_pushed is not None:
            await self.on_pushed(rendered, snapshot)
        return True

    async def _push(
        self, applied: ConfigState, desired: ConfigState, rendered: Rendered
    ) -> tuple[list[Problem], int]:
        """Send the difference; return the problems to report and how many were refused."""
        requests = applied.diff(desired)
        self.last_push = Counter(request.verb for request in requests)
        if not requests:
            return [], 0
        if len(requests) >= BULK_REQUESTS or is_swap(requests):
            requests = await self._push_in_bulk(requests, desired)
            applied = self._applied or applied
            if not requests:
                return [], 0
        responses = await self.client.execute(requests)
        failures, refused = [], 0
        for request, response in zip(requests, responses, strict=True):
            if response.status == ResponseStatus.OK:
                try:
                    applied.dispatch(request)
                except StateError as error:  # we no longer know what the dataplane holds
                    log.error("applied state diverged on %s: %s", request.verb, error)
                    self._applied = None
                continue
            refused += 1
            self.refused_requests += 1
            origin = rendered.origin(request)
            message = f"the dataplane refused {request.verb}: {response.message}"
            if origin is not None:
                failures.append(Problem(origin, "DataplaneRefused", message))
            else:
                log.error("%s", message)
        return failures, refused

    async def _push_in_bulk(self, requests: list[Request], desired: ConfigState) -> list[Request]:
        """A first sync or a swap: state files of BULK_CHUNK requests (each within main's
        patience for its workers; a swap of more is atomic per chunk only); returns what is
        still missing afterwards (sent one by one, so each refusal is reported)."""
        scratch = self.settings.command_socket.parent
        clean = True
        for start in range(0, len(requests), BULK_CHUNK):
            chunk = requests[start : start + BULK_CHUNK]
            clean = await load_in_bulk(self.client, scratch, chunk) and clean
        if clean:
            self._applied = desired.copy()
            return []
        log.warning("the bulk load was not clean: resyncing, then sending what is missing")
        actual = await fetch_state(self.client, scratch)
        self._applied = owned_view(actual, self.settings.render)
        return self._applied.diff(desired)

    # -- noticing a restarted or drifted dataplane --------------------------------------------

    async def watch_dataplane(self, heartbeat: Heartbeat | None = None) -> None:
        """Hold an event subscription: main closes it only when it goes away. The socket is
        tried every second while it is absent, so a starting dataplane is seen at once."""
        beat = heartbeat or Heartbeat("dataplane-watch", STALL_AFTER)
        backoff = Backoff(first=0.2, limit=1.0)
        first = True
        while True:
            beat.beat()
            watcher = DataplaneClient(self.settings.command_socket)
            try:
                await watcher.connect()
                await watcher.send_only(Request.of(subscribe_events=Empty()))
            except DataplaneError:
                await watcher.close()
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            if not first:
                log.info("dataplane is back: resyncing")
                self.dataplane_restarted()
            first = False
            self._dataplane_up.set()
            closed = asyncio.ensure_future(watcher.wait_closed())
            try:
                while not closed.done():
                    beat.beat()
                    await asyncio.wait({closed}, timeout=IDLE_BEAT)
            finally:
                closed.cancel()
                await watcher.close()
            log.warning("dataplane connection closed")
            await self.client.close()
            self.dataplane_restarted()

    async def resync_periodically(self, heartbeat: Heartbeat | None = None) -> None:
        """Now and then, read the dataplane's state again: what someone changed by hand (or a
        dataplane restart this side missed) is put back by the next diff."""
        beat = heartbeat or Heartbeat("dataplane-resync", STALL_AFTER)
        step = min(IDLE_BEAT, self.resync_interval)
        elapsed = 0.0
        while True:
            beat.beat()
            await asyncio.sleep(step)
            elapsed += step
            if elapsed >= self.resync_interval:
                elapsed = 0.0
                if self._in_sync:
                    self.dataplane_lost()
