"""Stopping every worker: soft (drain, optionally bounded by a deadline) or hard (now).

Soft: each worker stops accepting, closes its idle keep-alive connections, finishes the
requests in flight, answers OK and exits. With `deadline_seconds`, workers still draining
when it passes get `hard_stop`; that is the outcome the user asked for, so it is an OK whose
message says so. Hard: `hard_stop`, answered within `worker_timeout`. A worker that does not
stop cleanly is named in the FAILURE (main then exits with status 1).
"""

from __future__ import annotations

import logging

from dataplane.command.messages import HardStopOptions, Request
from dataplane.command.responses import Response, RunState
from dataplane.main.jobs import Job, Reply
from dataplane.main.workers import WorkerPool

log = logging.getLogger("pysozu.main.stopping")


def stop_workers(
    pool: WorkerPool, options: HardStopOptions, reply: Reply, timeout: float, soft: bool
) -> Job:
    workers = pool.live()
    for worker in workers:
        worker.run_state = RunState.STOPPING
    suffix = ""
    if soft:
        deadline = options.deadline_seconds
        within = f" within {deadline} s" if deadline else ""
        reply.processing(f"Stopping workers gracefully (draining connections{within})...")
        drain = Request.of(soft_stop=HardStopOptions(deadline_seconds=deadline))
        gather = yield pool.scatter(drain, float(deadline) if deadline else None, workers)
        late = [w for w in workers if w.id in gather.failures and w.alive]
        if deadline and late:
            names = ", ".join(str(w.id) for w in late)
            reply.processing(f"Drain deadline of {deadline} s reached: stopping {names} now")
            suffix = f" (drain deadline of {deadline} s reached: workers {names} stopped hard)"
            gather = yield pool.scatter(Request.of(hard_stop=HardStopOptions()), timeout, late)
    else:
        reply.processing("Stopping workers now...")
        gather = yield pool.scatter(Request.of(hard_stop=HardStopOptions()), timeout, workers)
    if gather.failures:
        return Response.failure(f"workers did not stop cleanly: {gather.failure_message()}")
    log.info("all workers stopped; main exits")
    return Response.ok("Proxy stopped" + (" gracefully" if soft else "") + suffix)
