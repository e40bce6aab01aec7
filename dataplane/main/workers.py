"""The worker table: spawning, talking to, reaping and respawning worker processes.

A worker is RUNNING once it answered its INITIAL-STATUS request. When its channel closes or its
process exits, it is killed if still alive, reaped, its pending requests fail naming it, and
(with `worker_automatic_restart`) a new worker is started with main's current state and
listening sockets. A worker that keeps dying young is restarted with a growing delay.
After a main upgrade the workers of the previous main are adopted (`adopt`): same table, a
pidfd instead of a child process.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import selectors
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import dataplane
from dataplane.command.channel import Channel, ChannelError, FrameError, FrameTooLarge
from dataplane.command.messages import Request, ServerConfig, WorkerRequest
from dataplane.command.responses import (
    Event,
    EventKind,
    ResponseStatus,
    RunState,
    WorkerInfo,
    WorkerResponse,
)
from dataplane.command.scm import Listeners, ScmError, send_listeners
from dataplane.main.adopted import AdoptedProcess
from dataplane.main.errors import SpawnError
from dataplane.main.loop import EventLoop
from dataplane.main.spawn import initial_status_id, spawn_worker
from dataplane.main.tasks import Gather

log = logging.getLogger("pysozu.main.workers")

RESPAWN_DELAY = 0.05
MAX_RESPAWN_DELAY = 5.0
HEALTHY_LIFETIME = 10.0
SCM_TIMEOUT = 2.0  # a worker's SCM socket is read only right after it announced a message

EventSink = Callable[[str, Event], None]


class Process(Protocol):
    """What the table needs of a worker process: a child (`Popen`) or an adopted one."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


class Worker:
    def __init__(
        self,
        worker_id: int,
        process: Process,
        channel: Channel[WorkerResponse],
        scm: socket.socket,
    ) -> None:
        self.id = worker_id
        self.process = process
        self.channel = channel
        self.scm = scm
        self.run_state = RunState.NOT_ANSWERING
        self.started_at = time.time()
        self.version = dataplane.__version__
        self.connections: int | None = None
        self.unhealthy_backends: int | None = None
        self.health_prober = False  # main named it the health prober (prober.py)
        # Until the worker answered INITIAL-STATUS it is reading its boot messages: what main
        # has to say meanwhile waits here, in order, so nothing mixes with the boot sequence.
        self.booted = False
        self.backlog: list[tuple[WorkerRequest, Listeners | None]] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.run_state not in (RunState.STOPPED,)

    def info(self, run_state: RunState | None = None) -> WorkerInfo:
        return WorkerInfo(
            id=self.id,
            pid=self.pid,
            run_state=self.run_state if run_state is None else run_state,
            version=self.version,
            started_at=self.started_at,
            connections=self.connections,
            unhealthy_backends=self.unhealthy_backends,
            health_prober=self.health_prober,
        )


class WorkerPool:
    def __init__(
        self,
        loop: EventLoop,
        server_config: ServerConfig,
        worker_count: int,
        automatic_restart: bool,
        state_requests: Callable[[], list[Request]],
        listeners: Callable[[], Listeners],
        on_event: EventSink,
    ) -> None:
        self.loop = loop
        self.server_config = server_config
        self.worker_count = worker_count
        self.automatic_restart = automatic_restart
        self._state_requests = state_requests
        self._listeners = listeners
        self._on_event = on_event
        self.workers: dict[int, Worker] = {}
        self.next_id = 0
        self._request_numbers = itertools.count()
        self._pending: dict[str, tuple[Gather, int]] = {}
        self._corked: dict[int, Worker] | None = None  # see `batch`
        self._respawn_delay = RESPAWN_DELAY
        self._respawns_scheduled = 0
        self.stopping = False
        self.restarts = 0  # workers started again after one died (not upgrades)
        # Watchers (main/prober.py): a worker spawned, booted, gone or retired, its events.
        self.on_spawned: Callable[[Worker], None] | None = None
        self.on_booted: Callable[[Worker], None] | None = None
        self.on_worker_gone: Callable[[Worker], None] | None = None
        self.on_worker_event: Callable[[Worker, Event], None] | None = None

    # -- the table --------------------------------------------------------------------------

    def live(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.alive]

    def infos(self) -> list[WorkerInfo]:
        return [w.info() for w in self.workers.values()]

    def start(self) -> None:
        for _ in range(self.worker_count):
            self.spawn()

    def spawn(self) -> Worker | None:
        worker_id = self.next_id
        self.next_id += 1
        try:
            spawned = spawn_worker(
                worker_id, self.server_config, self._state_requests(), self._listeners()
            )
        except SpawnError as error:
            log.error("%s", error)
            self._schedule_respawn()
            return None
        worker = Worker(worker_id, spawned.process, spawned.channel, spawned.scm)
        self.workers[worker_id] = worker
        self.loop.add(worker.channel, selectors.EVENT_READ, lambda m: self._on_ready(worker, m))
        log.info("launched worker %d with pid %d", worker_id, worker.pid)
        if self.on_spawned is not None:
            self.on_spawned(worker)
        return worker

    def adopt(
        self,
        worker_id: int,
        pid: int,
        channel: Channel[WorkerResponse],
        scm: socket.socket,
        run_state: RunState,
        version: str | None,
        started_at: float,
    ) -> None:
        """Take over a worker that the previous main started (main upgrade)."""
        channel.sock.setblocking(False)
        scm.settimeout(SCM_TIMEOUT)
        worker = Worker(worker_id, AdoptedProcess(pid), channel, scm)
        worker.booted = True
        worker.run_state = run_state
        worker.version = version or worker.version
        worker.started_at = started_at
        self.workers[worker_id] = worker
        self.loop.add(worker.channel, selectors.EVENT_READ, lambda m: self._on_ready(worker, m))
        log.info("adopted worker %d (pid %d, version %s)", worker_id, pid, worker.version)

    def flush_all(self, timeout: float) -> None:
        """Upgrade: push out every queued frame so the next main starts on frame boundaries."""
        for worker in self.live():
            if worker.channel.wants_write:
                try:
                    worker.channel.sock.settimeout(timeout)
                    worker.channel.flush()
                except (ChannelError, OSError) as error:
                    log.warning("could not flush worker %d's channel: %s", worker.id, error)
                finally:
                    worker.channel.sock.setblocking(False)

    def release(self) -> None:
        """Upgrade done: the next main owns the workers; forget them without touching them."""
        for worker in list(self.workers.values()):
            self.loop.remove(worker.channel)
        self.workers.clear()
        self.stopping = True

    # -- sending ----------------------------------------------------------------------------

    def scatter(
        self,
        request: Request,
        timeout: float | None,
        workers: Iterable[Worker] | None = None,
        listeners: Listeners | None = None,
    ) -> Gather:
        """Send `request` to each worker (with `listeners` over SCM first, if given)."""
        targets = list(self.live() if workers is None else workers)
        gather = Gather(request, [w.id for w in targets], timeout)
        for worker in targets:
            request_id = f"{request.verb}-{worker.id}-{next(self._request_numbers)}"
            self._pending[request_id] = (gather, worker.id)
            message = WorkerRequest(id=request_id, content=request)
            if worker.booted:
                self._deliver(worker, message, listeners)
            else:
                worker.backlog.append((message, listeners))
        if timeout is not None and not gather.done:
            gather.timer = self.loop.call_later(timeout, gather.expire)
        return gather

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold what is scattered meanwhile and write it at the end, in one write per worker.

        A worker applies every request of one read before it serves again, so it then sees a
        batch (a reload) whole: never the gap between a re-created listener's frontends going
        and coming back, where its requests would get 404s."""
        self._corked = {}
        try:
            yield
        finally:
            corked, self._corked = self._corked, None
            for worker in corked.values():
                self._flush(worker)

    def _deliver(self, worker: Worker, message: WorkerRequest, listeners: Listeners | None) -> None:
        if listeners is not None and not self._send_listeners(worker, listeners):
            pending = self._pending.pop(message.id, None)
            if pending is not None:
                pending[0].lose(worker.id, "could not pass the listening socket")
            return
        self.send(worker, message)

    def send(self, worker: Worker, message: WorkerRequest) -> None:
        try:
            worker.channel.send(message)
        except FrameTooLarge as error:  # this request only: the channel is fine
            pending = self._pending.pop(message.id, None)
            if pending is not None:
                pending[0].lose(worker.id, f"request too large for the channel: {error}")
            return
        except ChannelError as error:
            self._lose(worker, f"channel broke: {error}")
            return
        if self._corked is not None:
            self._corked[worker.id] = worker
            return
        self._flush(worker)

    def _flush(self, worker: Worker) -> None:
        if not worker.alive:
            return
        try:
            worker.channel.flush()
        except ChannelError as error:
            self._lose(worker, f"channel broke: {error}")
            return
        self._watch(worker)

    def _send_listeners(self, worker: Worker, listeners: Listeners) -> bool:
        try:
            send_listeners(worker.scm, listeners)
        except (ScmError, OSError) as error:
            log.error("could not pass listeners to worker %d: %s", worker.id, error)
            return False
        return True

    def _watch(self, worker: Worker) -> None:
        if not worker.alive:
            return
        events = selectors.EVENT_READ
        if worker.channel.wants_write:
            events |= selectors.EVENT_WRITE
        self.loop.modify(worker.channel, events, lambda m: self._on_ready(worker, m))

    # -- receiving --------------------------------------------------------------------------

    def _on_ready(self, worker: Worker, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                worker.channel.flush()
            if mask & selectors.EVENT_READ:
                for message in worker.channel.receive():
                    if not worker.alive:
                        return
                    self._on_message(worker, message)
        except ChannelError as error:
            self._lose(worker, f"channel closed ({error})")
            return
        self._watch(worker)

    def _read_last_answers(self, worker: Worker) -> None:
        """The frames an exited worker left in its channel (non-blocking: what is there)."""
        try:
            messages = worker.channel.receive()
        except ChannelError:
            return  # nothing left to read (EOF with no whole frame, or a broken channel)
        for message in messages:
            if not worker.alive:
                return
            self._on_message(worker, message)

    def _on_message(self, worker: Worker, message: WorkerResponse | FrameError) -> None:
        if isinstance(message, FrameError):
            log.warning("worker %d sent a bad frame: %s", worker.id, message.reason)
            return
        if message.id == initial_status_id(worker.id):
            self._on_booted(worker, message)
            return
        if message.id.startswith("EVENT") and message.content is not None:
            if message.content.kind == "event":
                if self.on_worker_event is not None:
                    self.on_worker_event(worker, message.content.value)
                self._on_event(f"WRK-{worker.id:02d}", message.content.value)
            return
        pending = self._pending.get(message.id)
        if pending is None:
            log.debug("worker %d answered unknown request %s", worker.id, message.id)
            return
        if message.status != ResponseStatus.PROCESSING:
            del self._pending[message.id]
        pending[0].answer(worker.id, message)

    def _on_booted(self, worker: Worker, message: WorkerResponse) -> None:
        if message.status == ResponseStatus.PROCESSING:
            return
        if message.status != ResponseStatus.OK:
            self._lose(worker, f"failed to boot: {message.message}")
            return
        worker.booted = True
        if worker.run_state == RunState.NOT_ANSWERING:
            worker.run_state = RunState.RUNNING
        self._respawn_delay = RESPAWN_DELAY
        self.adopt_info(worker, message)
        log.info("worker %d (pid %d) is running", worker.id, worker.pid)
        backlog, worker.backlog = worker.backlog, []
        for queued, listeners in backlog:
            if worker.alive:
                self._deliver(worker, queued, listeners)
        if self.on_booted is not None and worker.alive:
            self.on_booted(worker)

    @staticmethod
    def adopt_info(worker: Worker, message: WorkerResponse) -> None:
        """A worker may describe itself in its status answer (its version on disk...)."""
        if message.content is not None and message.content.kind == "workers":
            for info in message.content.value.vec:
                if info.version:
                    worker.version = info.version
                if info.connections is not None:
                    worker.connections = info.connections
                if info.unhealthy_backends is not None:
                    worker.unhealthy_backends = info.unhealthy_backends

    # -- death and rebirth ------------------------------------------------------------------

    def reap(self) -> None:
        """SIGCHLD: find the workers that exited. What a worker answered before it exited
        is read first: SIGCHLD can come before its channel is read (a stop's OK, sent just
        before the exit, was taken for a worker that died, and main exited with status 1)."""
        for worker in list(self.workers.values()):
            if worker.process.poll() is not None and worker.alive:
                self._read_last_answers(worker)
                self._lose(worker, f"exited with status {worker.process.returncode}")
            elif not worker.alive and worker.process.returncode is not None:
                del self.workers[worker.id]

    def _lose(self, worker: Worker, reason: str) -> None:
        if not worker.alive:
            return
        was_stopping = worker.run_state == RunState.STOPPING
        worker.run_state = RunState.STOPPED
        self.loop.remove(worker.channel)
        worker.channel.close()
        worker.scm.close()
        if worker.process.poll() is None:
            with contextlib.suppress(OSError):
                worker.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=1.0)
        if worker.process.returncode is not None:
            self.workers.pop(worker.id, None)
        for request_id, (gather, worker_id) in list(self._pending.items()):
            if worker_id == worker.id:
                del self._pending[request_id]
                gather.lose(worker.id, f"worker died ({reason})")
        if self.on_worker_gone is not None:
            self.on_worker_gone(worker)
        if self.stopping or was_stopping:
            log.info("worker %d (pid %d) stopped: %s", worker.id, worker.pid, reason)
            return
        log.error("worker %d (pid %d) %s", worker.id, worker.pid, reason)
        self._on_event("main", Event(kind=EventKind.WORKER_KILLED))
        lifetime = time.time() - worker.started_at
        if lifetime > HEALTHY_LIFETIME:
            self._respawn_delay = RESPAWN_DELAY
        if self.automatic_restart:
            self._schedule_respawn()

    def retire(self, worker: Worker) -> None:
        """The worker is being stopped on purpose (an upgrade): not respawned when it exits,
        no longer a candidate for anything (the health prober)."""
        worker.run_state = RunState.STOPPING
        if self.on_worker_gone is not None:
            self.on_worker_gone(worker)

    def replace_stuck(self, worker: Worker, silent_for: float) -> None:
        """A worker alive but silent (its loop is stuck): kill it; it is respawned as if dead."""
        if not worker.alive:
            return
        log.error(
            "worker %d (pid %d) has not answered for %.1f s: killing and replacing it",
            worker.id,
            worker.pid,
            silent_for,
        )
        with contextlib.suppress(OSError):
            worker.process.kill()
        self._lose(worker, f"was stuck (no answer for {silent_for:.1f} s) and was killed")

    def _schedule_respawn(self) -> None:
        if self.stopping or not self.automatic_restart:
            return
        delay = self._respawn_delay
        self._respawn_delay = min(MAX_RESPAWN_DELAY, delay * 4)
        self._respawns_scheduled += 1
        self.loop.call_later(delay, self._respawn)

    def _respawn(self) -> None:
        self._respawns_scheduled -= 1
        if self.stopping or len(self.live()) >= self.worker_count:
            return
        worker = self.spawn()
        if worker is not None:
            self.restarts += 1
            log.info(
                "relaunched worker %d (pid %d); worker restarts so far: %d",
                worker.id,
                worker.pid,
                self.restarts,
            )
            self._on_event("main", Event(kind=EventKind.WORKER_RELAUNCHED))

    def kill_all(self) -> None:
        for worker in self.live():
            self._lose(worker, "killed")

    def shutdown(self, grace: float) -> None:
        """Main exits: give workers `grace` seconds to exit on their own, then kill them."""
        self.stopping = True
        deadline = time.monotonic() + grace
        for worker in self.live():
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.returncode is not None:
                self._lose(worker, f"exited with status {worker.process.returncode}")
        self.kill_all()
