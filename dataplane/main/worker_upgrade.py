"""`upgrade_worker N`: replace one worker by a new one started from the code on disk.

Main holds every listening socket and shares it with all workers (one accept queue per
address), so unlike sozu no socket travels back to main: the new worker boots with main's
current state and the same sockets. Once it answered, the old worker stops accepting
(`return_listen_sockets`: it closes its copies, which main discards: main still holds the
originals), then it gets `soft_stop` (it answers what reaches it with `Connection: close`,
gives idle connections a short grace to send one more request, finishes the requests in
flight, exits). Connections that arrive meanwhile wait
in the shared queue for the new worker: none is refused or reset. The new worker gets the next
worker id, as in sozu.
"""

from __future__ import annotations

import contextlib
import logging

from dataplane.command.messages import Empty, HardStopOptions, Request
from dataplane.command.responses import Response, RunState
from dataplane.command.scm import ScmError, receive_listeners
from dataplane.main.jobs import Job, Reply
from dataplane.main.workers import Worker, WorkerPool

log = logging.getLogger("pysozu.main.upgrade")

# Booting a worker imports the proxy and replays the whole state: seconds on a loaded host.
BOOT_TIMEOUT = 30.0


def _discard_returned_sockets(worker: Worker) -> None:
    """The old worker's copies of main's listening sockets: main has the originals."""
    with contextlib.suppress(ScmError, OSError):
        receive_listeners(worker.scm).close()


def upgrade_worker(pool: WorkerPool, worker_id: int, reply: Reply, timeout: float) -> Job:
    old = pool.workers.get(worker_id)
    if old is None or not old.alive:
        return Response.failure(f"there is no live worker {worker_id}")
    if old.run_state == RunState.STOPPING:
        return Response.failure(f"worker {worker_id} is already stopping")
    reply.processing(f"Launching a new worker to replace worker {worker_id}...")
    new = pool.spawn()
    if new is None:
        return Response.failure(f"could not launch a worker to replace worker {worker_id}")
    started = yield pool.scatter(Request.of(status=Empty()), max(BOOT_TIMEOUT, timeout), [new])
    if not started.ok:
        new.run_state = RunState.STOPPING  # discarded, not respawned
        pool.replace_stuck(new, max(BOOT_TIMEOUT, timeout))
        return Response.failure(
            f"the new worker {new.id} did not start ({started.failure_message()}); "
            f"worker {worker_id} keeps serving"
        )
    reply.processing(
        f"Launched a new worker with id {new.id} (pid {new.pid}); "
        f"stopping worker {worker_id} gracefully..."
    )
    pool.retire(old)  # not respawned when it exits; another worker takes the health probes
    log.info("worker %d replaces worker %d: worker %d stops accepting", new.id, old.id, old.id)
    returned = yield pool.scatter(
        Request.of(return_listen_sockets=Empty()), max(BOOT_TIMEOUT, timeout), [old]
    )
    if returned.ok:
        _discard_returned_sockets(old)
    stopped = yield pool.scatter(Request.of(soft_stop=HardStopOptions()), None, [old])
    if stopped.failures and old.alive:
        return Response.failure(
            f"worker {new.id} serves, but worker {worker_id} did not stop cleanly: "
            f"{stopped.failure_message()}"
        )
    return Response.ok(
        f"Upgrade successful: worker {worker_id} was replaced by worker {new.id} (pid {new.pid})"
    )
