"""The supervisor: main's command server, tying state, workers, clients and signals together.

One selector loop serves many CLI clients (one request at a time each), the worker channels,
the signal pipe and timers. Every verb ends with exactly one OK or FAILURE (except
`subscribe_events`, which streams). See LIFECYCLE.md beside this file.
"""

from __future__ import annotations

import itertools
import logging
import selectors
import signal
import socket
from collections import Counter
from typing import Any

import dataplane
from dataplane.command.config import Config
from dataplane.command.messages import STATE_VERBS, HardStopOptions, Request
from dataplane.command.responses import Event, EventKind, Response, RunState
from dataplane.command.state import ConfigState
from dataplane.command.statefile import write_state_file
from dataplane.main import queries, reconfigure
from dataplane.main.changes import StateKeeper, apply_change
from dataplane.main.clients import Client
from dataplane.main.command_socket import CommandSocket
from dataplane.main.events import EventHub
from dataplane.main.jobs import Job, NoReply, Outcome, Reply, run_job
from dataplane.main.listeners import ListenerSockets
from dataplane.main.log import LogTargetError, level_name, set_level
from dataplane.main.loop import EventLoop
from dataplane.main.metrics_query import query_metrics
from dataplane.main.signals import SignalPipe
from dataplane.main.workers import WorkerPool

log = logging.getLogger("pysozu.main")

MAX_CLIENTS = 1024
EXIT_GRACE = 3.0

NOT_SUPPORTED = {
    "upgrade_main": "upgrade",
    "upgrade_worker": "upgrade",
    "launch_worker": "launch_worker (never implemented by sozu either)",
    "set_metric_detail": "metrics detail leases",
}
FROM_STATE = {
    "list_frontends",
    "list_listeners",
    "query_certificates_from_the_state",
    "query_health_checks",
}
GATHERED = {
    "query_cluster_by_id",
    "query_clusters_by_domain",
    "query_clusters_hashes",
    "query_certificates_from_workers",
}
FORWARDED = {"set_max_connections_per_ip", "query_max_connections_per_ip", "configure_metrics"}
CHANGING = STATE_VERBS | {"load_state", "reload_configuration"}


class Supervisor:
    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.loop = EventLoop()
        self.state = ConfigState()
        self.sockets = ListenerSockets()
        self.events = EventHub()
        self.keeper = StateKeeper(self.state, self.sockets, self.events)
        server_config = config.server_config()
        if server_config.version is None:
            server_config.version = dataplane.__version__
        self.pool = WorkerPool(
            self.loop,
            server_config,
            config.worker_count,
            config.worker_automatic_restart,
            self.state.generate_requests,
            self.sockets.for_scm,
            self.events.emit,
        )
        self.timeout = float(config.worker_timeout)
        self.request_counts: Counter[str] = Counter()
        self.clients: dict[int, Client] = {}
        self._client_ids = itertools.count(1)
        self.command_socket: CommandSocket | None = None
        # From now on a signal never kills main half-started: it waits for the loop.
        self.signals = SignalPipe()
        self.stopping = False
        self.exit_code = 0

    # -- life ---------------------------------------------------------------------------------

    def listen(self, command_socket: CommandSocket) -> None:
        """Serve clients on `command_socket` (its owner closes it) and handle signals."""
        self.command_socket = command_socket
        self.loop.add(command_socket.sock, selectors.EVENT_READ, self._accept)
        self.loop.add(self.signals, selectors.EVENT_READ, self._on_signals)

    def run(self) -> int:
        self.loop.run()
        return self.exit_code

    def close(self) -> None:
        self.pool.shutdown(EXIT_GRACE)
        for client in list(self.clients.values()):
            client.flush_blocking(0.5)
            client.close()
        self.signals.close()
        self.sockets.close_all()
        self.loop.close()

    # -- clients ------------------------------------------------------------------------------

    def _accept(self, _mask: int) -> None:
        assert self.command_socket is not None
        for _ in range(64):
            try:
                sock, _addr = self.command_socket.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.error("could not accept a command client: %s", error)
                return
            if len(self.clients) >= MAX_CLIENTS:
                log.warning("too many command clients (%d): refusing one", MAX_CLIENTS)
                sock.close()
                continue
            self._add_client(sock)

    def _add_client(self, sock: socket.socket) -> None:
        client_id = next(self._client_ids)
        self.clients[client_id] = Client(
            client_id,
            sock,
            self.loop,
            self.config.max_command_buffer_size,
            self._on_request,
            self._forget_client,
        )

    def _forget_client(self, client: Client) -> None:
        self.clients.pop(client.id, None)

    def _on_request(self, client: Client, request: Request) -> None:
        self.request_counts[request.verb] += 1
        log.info("client %d: %s", client.id, request.verb)
        log.debug("client %d: %r", client.id, request)
        self._run(self.handle(request, client), client.finish)

    def _run(self, outcome: Outcome, finish: Any) -> None:
        def done(response: Response | None) -> None:
            self._autosave()
            finish(response)

        run_job(outcome, done)

    # -- verbs --------------------------------------------------------------------------------

    def handle(self, request: Request, reply: Reply) -> Outcome:
        verb = request.verb
        body = request.body
        if self.stopping and verb in CHANGING:
            return Response.failure("main is stopping: the state cannot change any more")
        if verb in STATE_VERBS:
            return apply_change(self.keeper, self.pool, request, reply, self.timeout)
        if verb in FROM_STATE:
            return queries.from_state(self.state, request)
        if verb in GATHERED:
            return queries.gathered(self.state, self.pool, request, self.timeout)
        if verb in FORWARDED:
            return queries.forwarded(self.pool, request, self.timeout)
        if verb in NOT_SUPPORTED:
            return Response.failure(f"{verb}: {NOT_SUPPORTED[verb]} is not supported yet by pysozu")
        match verb:
            case "status":
                return queries.status(self.pool, self.timeout)
            case "query_metrics":
                return query_metrics(self.pool, request, self.timeout)
            case "list_workers":
                return queries.list_workers(self.pool)
            case "count_requests":
                return queries.count_requests(self.request_counts)
            case "save_state":
                return reconfigure.save_state(self.state, self.events, body)
            case "load_state":
                return reconfigure.load_state(self.keeper, self.pool, body, reply, self.timeout)
            case "reload_configuration":
                path = body or self.config_path
                return reconfigure.reload_configuration(
                    self.keeper, self.pool, path, reply, self.timeout
                )
            case "subscribe_events":
                self.events.subscribe(reply)  # type: ignore[arg-type]
                return None
            case "logging":
                return self._logging(body)
            case "soft_stop":
                return self._stop(request, body, reply, soft=True)
            case "hard_stop":
                return self._stop(request, body, reply, soft=False)
            case "return_listen_sockets":
                return Response.failure(
                    "return_listen_sockets is sent by main to its workers, not by clients"
                )
        return Response.failure(f"unknown verb {verb}")

    def _logging(self, spec: str) -> Job:
        try:
            level = level_name(spec)
        except LogTargetError as error:
            return Response.failure(str(error))
        set_level(level)
        self.events.emit("main", Event(kind=EventKind.LOGGING_LEVEL_CHANGED))
        # Workers get the plain level main settled on, not the filter syntax.
        gather = yield self.pool.scatter(Request.of(logging=level), self.timeout)
        if gather.failures:
            return Response.failure(f"main logs at {spec}, but: {gather.failure_message()}")
        return Response.ok(f"Logging level changed to {spec}")

    # -- stopping -----------------------------------------------------------------------------

    def _stop(self, request: Request, options: HardStopOptions, reply: Reply, soft: bool) -> Job:
        if self.stopping and soft:
            return Response.failure("main is already stopping")
        self.stopping = True
        self.pool.stopping = True
        self.events.emit("main", Event(kind=EventKind.SOZU_STOP_REQUESTED))
        workers = self.pool.live()
        for worker in workers:
            worker.run_state = RunState.STOPPING
        if soft:
            reply.processing("Stopping workers gracefully (draining connections)...")
            deadline = options.deadline_seconds
            gather = yield self.pool.scatter(
                request, float(deadline) if deadline else None, workers
            )
        else:
            reply.processing("Stopping workers now...")
            gather = yield self.pool.scatter(request, self.timeout, workers)
        self.loop.call_later(0, self.loop.stop)
        if gather.failures:
            self.exit_code = 1
            return Response.failure(f"workers did not stop cleanly: {gather.failure_message()}")
        log.info("all workers stopped; main exits")
        return Response.ok("Proxy stopped" + (" gracefully" if soft else ""))

    # -- signals ------------------------------------------------------------------------------

    def _on_signals(self, _mask: int) -> None:
        self.signals.drain(self._on_signal)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self.pool.reap()
            return
        soft = signum in (signal.SIGTERM, signal.SIGQUIT)
        name = signal.Signals(signum).name
        if self.stopping:
            if soft:
                log.info("received %s while stopping: already stopping", name)
                return
            log.info("received %s while stopping: stopping now", name)
            self.exit_code = 128 + signum
            self.pool.kill_all()
            self.loop.stop()
            return
        log.info("received %s: %s stop", name, "soft" if soft else "hard")
        verb = "soft_stop" if soft else "hard_stop"
        request = Request.of(**{verb: HardStopOptions()})
        self._run(self._stop(request, HardStopOptions(), NoReply(), soft), self._log_outcome)

    @staticmethod
    def _log_outcome(response: Response | None) -> None:
        if response is not None:
            log.info("%s", response.message)

    # -- persistence --------------------------------------------------------------------------

    def _autosave(self) -> None:
        """`automatic_state_save`: keep `saved_state` in step with every change."""
        path = self.config.saved_state
        if not (self.config.automatic_state_save and path and self.keeper.dirty):
            return
        self.keeper.dirty = False
        try:
            write_state_file(path, self.state.generate_requests())
        except OSError as error:
            log.error("automatic state save to %s failed: %s", path, error)
