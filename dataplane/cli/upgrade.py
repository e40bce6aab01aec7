"""`pysozu upgrade`: the main process first, then every worker in turn (as sozu's CLI).

`upgrade_main` is answered by the old main, which then exits; the CLI connects again (the same
socket, now served by the new main), lists the workers and sends `upgrade_worker` for each one
that runs, one after the other, so that at most one worker is draining at a time. Every
PROCESSING message is printed as it arrives. `--worker N` upgrades that worker only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from dataplane.cli.client import CommandClient, CommandError
from dataplane.command.messages import Empty, Request
from dataplane.command.responses import Response, ResponseStatus, RunState

RECONNECT_TIMEOUT = 10.0

Connect = Callable[[], CommandClient]
Say = Callable[[str], None]


def say(line: str) -> None:
    """Progress for people (`-j` passes a silent one: stdout is then one JSON answer)."""
    print(line, file=sys.stdout, flush=True)


def _progress(tell: Say) -> Callable[[Response], None]:
    def show(response: Response) -> None:
        if response.message:
            tell(response.message)

    return show


def _reconnect(connect: Connect) -> CommandClient:
    """The old main closes the socket's last descriptor it holds only as it exits: retry."""
    deadline = time.monotonic() + RECONNECT_TIMEOUT
    while True:
        try:
            return connect()
        except CommandError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def upgrade_one_worker(connect: Connect, worker_id: int, tell: Say = say) -> Response:
    with connect() as client:
        return client.request(Request.of(upgrade_worker=worker_id), _progress(tell))


def upgrade_everything(connect: Connect, tell: Say = say) -> Response:
    """Main, then each worker; the first FAILURE stops the sequence and is returned."""
    with connect() as client:
        response = client.request(Request.of(upgrade_main=Empty()), _progress(tell))
    if response.status != ResponseStatus.OK:
        return response
    tell(response.message)
    with _reconnect(connect) as client:
        listed = client.request(Request.of(list_workers=Empty()))
        if listed.status != ResponseStatus.OK or listed.content is None:
            return listed
        workers = [
            info.id
            for info in listed.content.value.vec
            if info.run_state in (RunState.RUNNING, RunState.NOT_ANSWERING)
        ]
        for worker_id in workers:
            tell(f"Upgrading worker {worker_id}...")
            response = client.request(Request.of(upgrade_worker=worker_id), _progress(tell))
            if response.status != ResponseStatus.OK:
                return response
            tell(response.message)
    return Response.ok(f"Upgraded the main process and {len(workers)} workers")
