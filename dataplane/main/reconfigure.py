"""Whole-state verbs: `save_state`, `load_state` and `reload_configuration`.

`load_state` merges (what exists stays; each record is applied as a request and counted).
`reload_configuration` re-reads the TOML file and applies what changed in it since main last
read it (at start or at the last reload: `StateKeeper.file_state`), and only that (sozu
re-adds everything and reports every duplicate as an error). Changes made through the command
socket stay unless the file's own change touches the same object, whose file version then
wins (state_merge.py). The file counts as read even when some of its changes were refused: the
answer names them, and a later reload does not retry them unless the file changes them again.
"""

from __future__ import annotations

import logging

from dataplane.command.config import ConfigError, default_config, load_config
from dataplane.command.responses import Event, EventKind, Response
from dataplane.command.state import ConfigState, StateError
from dataplane.command.state_merge import three_way
from dataplane.command.statefile import read_state_file, write_state_file
from dataplane.main.changes import BatchResult, StateKeeper, apply_batch
from dataplane.main.events import EventHub
from dataplane.main.jobs import Job, Reply
from dataplane.main.workers import WorkerPool

log = logging.getLogger("pysozu.main.reconfigure")


def save_state(state: ConfigState, events: EventHub, path: str) -> Response:
    requests = state.generate_requests()
    try:
        write_state_file(path, requests)
    except OSError as error:
        return Response.failure(f"could not save the state to {path}: {error}")
    events.emit("main", Event(kind=EventKind.STATE_SAVED))
    return Response.ok(f"Saved {len(requests)} config messages to {path}")


def _summary(result: BatchResult, decode_errors: list[str]) -> tuple[str, list[str]]:
    errors = decode_errors + result.refused + result.worker_failures
    return f"{result.applied} ok messages, {len(errors)} errors", errors


def load_state(
    keeper: StateKeeper, pool: WorkerPool, path: str, reply: Reply, timeout: float
) -> Job:
    try:
        requests, decode_errors = read_state_file(path)
    except OSError as error:
        return Response.failure(f"could not load the state from {path}: {error}")
    reply.processing(f"Loading state from {path}...")
    result = yield from apply_batch(keeper, pool, requests, timeout)
    counts, errors = _summary(result, decode_errors)
    for problem in errors:
        log.warning("load_state %s: %s", path, problem)
    keeper.events.emit("main", Event(kind=EventKind.STATE_LOADED))
    return Response.ok(f"Successfully loaded state from path {path}, {counts}")


def target_state(path: str | None) -> ConfigState:
    """The state a configuration file describes; raise `ConfigError` / `StateError`."""
    config = load_config(path) if path else default_config()
    state = ConfigState()
    for request in config.generate_requests():
        state.dispatch(request)
    return state


def reload_configuration(
    keeper: StateKeeper, pool: WorkerPool, path: str | None, reply: Reply, timeout: float
) -> Job:
    source = path or "the embedded default configuration"
    try:
        wanted = target_state(path)
    except ConfigError as error:
        problems = "; ".join(str(problem) for problem in error.problems) or str(error)
        return Response.failure(f"could not reload {source}: {problems}")
    except StateError as error:
        return Response.failure(f"could not reload {source}: {error}")
    target, conflicts = three_way(keeper.state, keeper.file_state, wanted)
    keeper.file_state = wanted
    changes = keeper.state.diff(target)
    for conflict in conflicts:
        log.warning("reload of %s: %s", source, conflict)
    if not changes and not conflicts:
        return Response.ok(f"Reloaded {source}: nothing changed")
    reply.processing(f"Reloading {source}: {len(changes)} changes")
    result = yield from apply_batch(keeper, pool, changes, timeout)
    counts, errors = _summary(result, conflicts)
    keeper.events.emit("main", Event(kind=EventKind.CONFIGURATION_RELOADED))
    if errors:
        return Response.failure(f"Reloaded {source} with errors ({counts}): " + "; ".join(errors))
    return Response.ok(f"Reloaded {source}: {counts}")
