"""The supervisor: main's command server, tying state, workers, clients and signals together.

One selector loop serves many CLI clients (one request at a time each), the worker channels,
the signal pipe and timers. Every verb ends with exactly one OK or FAILURE (except
`subscribe_events`, which streams). Verbs that change something are bracketed by systemd's
RELOADING=1 / READY=1. See LIFECYCLE.md beside this file.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time
from typing import TYPE_CHECKING, Any

import dataplane
from dataplane.command.config import Config
from dataplane.command.logs import LogTargetError, level_name, reopen_log_file, set_level
from dataplane.command.messages import (
    STATE_VERBS,
    WORKER_ONLY_VERBS,
    HardStopOptions,
    MetricDetail,
    Request,
    SetMetricDetail,
)
from dataplane.command.responses import (
    Event,
    EventKind,
    MetricDetailStatus,
    MetricDetailTransition,
    Response,
    ResponseContent,
    ResponseStatus,
)
from dataplane.command.state import ConfigState
from dataplane.command.statefile import write_state_file
from dataplane.main import main_upgrade, notify, queries, reconfigure
from dataplane.main.audit import AuditLog
from dataplane.main.audit_record import AUDIT_VERBS
from dataplane.main.changes import StateKeeper, apply_change
from dataplane.main.client_table import MAX_SUBSCRIBERS, ClientTable
from dataplane.main.clients import Client
from dataplane.main.command_socket import CommandSocket
from dataplane.main.events import EventHub
from dataplane.main.figures import LifecycleFigures, MainFigures
from dataplane.main.heartbeat import Heartbeat
from dataplane.main.jobs import Job, NoReply, Outcome, Reply, run_job
from dataplane.main.listeners import ListenerSockets
from dataplane.main.loop import EventLoop
from dataplane.main.metric_leases import LeaseError, MetricLeases
from dataplane.main.metrics_query import query_metrics
from dataplane.main.prober import HealthProber
from dataplane.main.signals import SignalPipe
from dataplane.main.statsd import StatsdPoller
from dataplane.main.stopping import stop_workers
from dataplane.main.tasks import Gather
from dataplane.main.worker_upgrade import upgrade_worker
from dataplane.main.workers import WorkerPool

if TYPE_CHECKING:  # prometheus_client is imported only when an endpoint is started (run.py)
    from dataplane.main.prometheus_http import PrometheusEndpoint

log = logging.getLogger("pysozu.main")

EXIT_GRACE = 3.0

NOT_SUPPORTED = {
    "launch_worker": "launch_worker (never implemented by sozu either)",
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
# systemd hears RELOADING=1 before these and READY=1 after (stops say STOPPING=1 instead).
RELOADING = CHANGING | {
    "save_state",
    "logging",
    "set_max_connections_per_ip",
    "upgrade_main",
    "upgrade_worker",
}
HANDOVER_FLUSH_TIMEOUT = 2.0
# Audited when asked for (as sozu's "stop requested") rather than when they end: a stop may
# end with main. A subscription is audited when it starts (its request never ends).
AUDITED_AT_START = {"soft_stop", "hard_stop"}


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
        self.prober = HealthProber(self.pool, self.state)  # one health prober, verdicts relayed
        self.keeper.on_applied = self.prober.on_change
        self.timeout = float(config.worker_timeout)
        self.heartbeat = Heartbeat(self.loop, self.pool, self.timeout)
        self.figures = LifecycleFigures()
        self.request_counts = self.figures.request_counts
        self.main_metrics = MainFigures(workers_alive=lambda: len(self.pool.live()))
        self.prometheus: PrometheusEndpoint | None = None  # prometheus_main.start_prometheus
        self.prometheus_address: str | None = None  # --prometheus-address (kept on upgrade)
        self.statsd: StatsdPoller | None = None  # run._start_statsd ([metrics] address)
        configured = server_config.metrics.detail if server_config.metrics else None
        self.leases = MetricLeases(configured or MetricDetail.DETAIL_CLUSTER)
        self.clients = ClientTable(
            self.loop,
            config.max_command_buffer_size,
            self._on_request,
            allowed_uids=config.command_allowed_uids,
            on_refused=self._on_refused,
        )
        self.command_socket: CommandSocket | None = None
        # Raises AuditTargetError (the start fails) when a target cannot be opened.
        self.audit = AuditLog(
            self.loop,
            config.audit_logs_target,
            config.audit_logs_json_target,
            config.command_socket,
            lambda: self.figures.main_upgrades,
        )
        # From now on a signal never kills main half-started: it waits for the loop.
        self.signals = SignalPipe()
        self.stopping = False
        self.handed_over = False  # upgraded: the new main owns the sockets and workers
        self.demo_backend_pids: list[int] = []  # stopped by whichever main exits last
        self.exit_code = 0

    # -- life ---------------------------------------------------------------------------------

    def listen(self, command_socket: CommandSocket) -> None:
        """Serve clients on `command_socket` (its owner closes it) and handle signals."""
        self.command_socket = command_socket
        self.loop.add(command_socket.sock, selectors.EVENT_READ, self._accept)
        self.clients.start()
        self.loop.add(self.signals, selectors.EVENT_READ, self._on_signals)

    def start_workers(self) -> None:
        """Spawn what the pool lacks (all of them, or those an upgrade did not hand over)."""
        for _ in range(max(0, self.pool.worker_count - len(self.pool.live()))):
            self.pool.spawn()
        self.prober.reconsider(tell_all=True)  # after an upgrade: the adopted workers
        self.heartbeat.start()

    def run(self) -> int:
        self.loop.run()
        return self.exit_code

    def close(self) -> None:
        self.audit.close()
        if self.prometheus is not None:
            self.prometheus.close()
        if self.statsd is not None:
            self.statsd.close()
        self.pool.shutdown(EXIT_GRACE)
        self.clients.close_all(0.5)
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
            self.clients.admit(sock)

    def _on_request(self, client: Client, request: Request) -> None:
        self.request_counts[request.verb] += 1
        log.info("client %d: %s", client.id, request.verb)
        log.debug("client %d: %r", client.id, request)
        reloading = self._reloading(request.verb)
        audited = request.verb in AUDIT_VERBS
        started = time.monotonic()
        if audited and request.verb in AUDITED_AT_START:
            self.audit.request(client, request, Response.ok(""), None)

        def finish(response: Response | None) -> None:
            if audited and request.verb not in AUDITED_AT_START:
                elapsed = time.monotonic() - started  # None: subscribed, the stream goes on
                self.audit.request(client, request, response or Response.ok(""), elapsed)
            if response is not None:  # counted for Prometheus, by verb and result
                ok = response.status == ResponseStatus.OK
                self.main_metrics.config_request(request.verb, ok)
            client.finish(response)

        self._run(self.handle(request, client), finish, reloading)

    def _on_refused(self, client: Client, request: Request | None) -> None:
        """`command_allowed_uids` refused this client's peer: say who tried what."""
        self.audit.refused(client, request)

    def _reloading(self, verb: str) -> bool:
        """Tell systemd before the handler starts (some finish within `handle`)."""
        if verb in RELOADING and not self.stopping:
            notify.reloading()
            return True
        return False

    def _run(self, outcome: Outcome, finish: Any, reloading: bool = False) -> None:
        def done(response: Response | None) -> None:
            self._autosave()
            if reloading and not self.handed_over:
                notify.ready()
            finish(response)

        run_job(outcome, done)

    # -- verbs --------------------------------------------------------------------------------

    def handle(self, request: Request, reply: Reply) -> Outcome:
        verb = request.verb
        body = request.body
        if self.handed_over:
            return Response.failure("this main process was replaced by an upgrade: reconnect")
        if self.stopping and verb in CHANGING:
            return Response.failure("main is stopping: the state cannot change any more")
        if verb in WORKER_ONLY_VERBS:
            return Response.failure(f"{verb} is sent by main to its workers, not by clients")
        if verb in NOT_SUPPORTED:
            return Response.failure(f"{verb}: {NOT_SUPPORTED[verb]} is not supported yet by pysozu")
        if verb in STATE_VERBS:
            return apply_change(self.keeper, self.pool, request, reply, self.timeout)
        if verb in FROM_STATE:
            return queries.from_state(self.state, request)
        if verb in GATHERED:
            return queries.gathered(self.state, self.pool, request, self.timeout)
        if verb == "configure_metrics":
            return self._configure_metrics(request)
        if verb in FORWARDED:
            return queries.forwarded(self.pool, request, self.timeout)
        match verb:
            case "status":
                described = LifecycleFigures.describe_main(
                    self.pool.restarts, self.figures.main_upgrades
                )
                return queries.status(self.pool, self.timeout, described)
            case "query_metrics":
                if self.config.disable_cluster_metrics:  # sozu: no cluster figures kept
                    request.body.no_clusters = True
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
                return self._reload(body, reply)
            case "upgrade_worker":
                return self._upgrade_worker(body, reply)
            case "upgrade_main":
                return self._upgrade_main(reply)
            case "subscribe_events":
                if isinstance(reply, Client) and not self.clients.may_subscribe(reply):
                    return Response.failure(
                        f"too many event subscribers ({MAX_SUBSCRIBERS}): try again later"
                    )
                self.events.subscribe(reply)  # type: ignore[arg-type]
                return None
            case "logging":
                return self._logging(body)
            case "set_metric_detail":
                return self._set_metric_detail(body)
            case "soft_stop":
                return self._stop(body, reply, soft=True)
            case "hard_stop":
                return self._stop(body, reply, soft=False)
        return Response.failure(f"unknown verb {verb}")

    def _reload(self, path: str, reply: Reply) -> Outcome:
        return reconfigure.reload_configuration(
            self.keeper, self.pool, path or self.config_path, reply, self.timeout
        )

    def _upgrade_worker(self, worker_id: int, reply: Reply) -> Job:
        if self.stopping:
            return Response.failure("main is stopping: no upgrade")
        response = yield from upgrade_worker(self.pool, worker_id, reply, self.timeout)
        if response is not None and response.status == ResponseStatus.OK:
            self.figures.worker_upgrades += 1
            self.events.emit("main", Event(kind=EventKind.WORKER_UPGRADED))
        return response

    def _upgrade_main(self, reply: Reply) -> Response:
        """Blocking on purpose: until the new main confirms, this one must read nothing."""
        if self.stopping or self.command_socket is None:
            return Response.failure("main is stopping: no upgrade")
        hazard = main_upgrade.upgrade_hazard()
        if hazard is not None:
            return Response.failure(f"no upgrade of main: {hazard}")
        booting = [str(w.id) for w in self.pool.live() if not w.booted]
        if booting:  # what main queued for them would be lost in the handover
            return Response.failure(
                f"workers {', '.join(booting)} are still starting: upgrade main once they run"
            )
        reply.processing("Upgrading the main process...")
        if isinstance(reply, Client):
            reply.flush_blocking(HANDOVER_FLUSH_TIMEOUT)
        self.heartbeat.stop()
        self.pool.flush_all(HANDOVER_FLUSH_TIMEOUT)
        data = main_upgrade.snapshot(
            self.pool,
            self.sockets,
            self.state,
            self.command_socket,
            self.config_path,
            self.figures,
            self.demo_backend_pids,
            self.prometheus_address,
            self.keeper.file_state,
            self.prober,
        )
        try:
            pid = main_upgrade.hand_over(
                data, self.config.command_buffer_size, self.config.max_command_buffer_size
            )
        except main_upgrade.UpgradeError as error:
            log.error("upgrade failed, this main keeps serving: %s", error)
            self.heartbeat.start()
            return Response.failure(f"upgrade failed: {error}")
        self.handed_over = True
        # Subscribers are this main's clients: they hear it before it goes, then reconnect.
        self.events.emit("main", Event(kind=EventKind.MAIN_UPGRADED))
        self.pool.release()
        self.loop.remove(self.command_socket.sock)
        self.loop.call_later(0, self.loop.stop)
        log.info("main process %d took over; this one exits without touching the workers", pid)
        return Response.ok(
            f"Upgrade successful, closing main process. New main process has pid {pid}"
        )

    def _set_metric_detail(self, lease: SetMetricDetail) -> Job:
        previous = self.leases.effective
        try:
            end = self.leases.apply(lease, time.monotonic())
        except LeaseError as error:
            return Response.failure(f"set_metric_detail: {error}")
        if end is not None:
            self.loop.call_later(end - time.monotonic() + 0.01, self._expire_leases)
        effective = self.leases.effective
        gather = yield self._send_metric_detail()
        if effective != previous:
            self._metric_detail_changed(previous, lease.client_id, "lease")
        status = MetricDetailStatus(
            configured=self.leases.configured, effective=effective, previous_effective=previous
        )
        content = ResponseContent.of(metric_detail_status=status)
        if gather.failures:
            return Response.failure(f"metric detail: {gather.failure_message()}")
        return Response.ok(
            f"metric detail is {effective.name} ({len(self.leases)} leases)", content
        )

    def _send_metric_detail(self) -> Gather:
        detail = SetMetricDetail(client_id="main", detail=self.leases.effective)
        return self.pool.scatter(Request.of(set_metric_detail=detail), self.timeout)

    def _expire_leases(self) -> None:
        previous = self.leases.effective
        ended = self.leases.expire(time.monotonic())
        if ended and self.leases.effective != previous:
            self._send_metric_detail()  # answers are not awaited: a worker that misses it
            # catches up at the next change or renewal
            self._metric_detail_changed(previous, ended[0], "expired")

    def _metric_detail_changed(self, previous: MetricDetail, client: str, kind: str) -> None:
        transition = MetricDetailTransition(
            previous_effective=previous,
            effective=self.leases.effective,
            transition_kind=kind,
            client_id=client,
        )
        log.info(
            "metric detail %s -> %s (%s %s)", previous.name, transition.effective.name, kind, client
        )
        self.events.emit(
            "main", Event(kind=EventKind.METRIC_DETAIL_CHANGED, metric_detail=transition)
        )

    def _configure_metrics(self, request: Request) -> Job:
        response = yield from queries.forwarded(self.pool, request, self.timeout)
        if response is not None and response.status == ResponseStatus.OK:
            self.events.emit("main", Event(kind=EventKind.METRICS_CONFIGURED))
        return response

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

    def _stop(self, options: HardStopOptions, reply: Reply, soft: bool) -> Job:
        if self.stopping and soft:
            return Response.failure("main is already stopping")
        self.stopping = True
        self.pool.stopping = True
        self.heartbeat.stop()
        notify.stopping()
        self.events.emit("main", Event(kind=EventKind.SOZU_STOP_REQUESTED))
        # Main's copies of the listening sockets go now; each worker closes its own once it
        # has accepted what was queued, and then new connections are refused, not left waiting.
        self.keeper.sockets.close_all()
        response = yield from stop_workers(self.pool, options, reply, self.timeout, soft)
        self.loop.call_later(0, self.loop.stop)
        if response is not None and response.status != ResponseStatus.OK:
            self.exit_code = 1
        return response

    # -- signals ------------------------------------------------------------------------------

    def _on_signals(self, _mask: int) -> None:
        self.signals.drain(self._on_signal)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self.pool.reap()
            return
        if signum == signal.SIGUSR1:
            self._reopen_logs()
            return
        if signum == signal.SIGHUP:
            if self.stopping or self.handed_over:
                return
            log.info("received SIGHUP: reloading %s", self.config_path or "the default config")
            reloading = self._reloading("reload_configuration")
            self._run(self._reload("", NoReply()), self._log_outcome, reloading)
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
        self._run(self._stop(HardStopOptions(), NoReply(), soft), self._log_outcome)

    def _reopen_logs(self) -> None:
        """SIGUSR1 (logrotate's postrotate): main reopens its log file, the workers theirs
        and their access log files."""
        reopen_log_file()
        self.audit.reopen()
        workers = [w for w in self.pool.live() if w.booted]  # a booting one has no handler yet
        log.info("received SIGUSR1: log file reopened, forwarding to %d workers", len(workers))
        for worker in workers:
            try:
                os.kill(worker.pid, signal.SIGUSR1)
            except OSError as error:
                log.warning("could not signal worker %d: %s", worker.id, error)

    @staticmethod
    def _log_outcome(response: Response | None) -> None:
        if response is not None:
            log.info("%s", response.message)

    # -- persistence --------------------------------------------------------------------------

    def _autosave(self) -> None:
        """`automatic_state_save`: keep `saved_state` in step with every change."""
        path = self.config.saved_state
        if self.handed_over:  # the new main keeps the file from now on
            return
        if not (self.config.automatic_state_save and path and self.keeper.dirty):
            return
        self.keeper.dirty = False
        try:
            write_state_file(path, self.state.generate_requests())
        except OSError as error:
            log.error("automatic state save to %s failed: %s", path, error)
