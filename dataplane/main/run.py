"""`pysozu start`: load the config, bind, spawn the workers, serve until stopped.

Startup order (as sozu's `begin_main_process`, with the state applied before the workers
exist so that they boot with it): config -> logging -> command socket -> pid file -> demo
backends (embedded default config only) -> the config's requests into main's state (binding
active listeners) -> `saved_state` -> workers -> READY=1 -> loop.

After `upgrade`, `run_upgraded_main` is the new main's entry: the same, except that the state,
the sockets and the workers come from the previous main (main_upgrade.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import dataplane
from dataplane.command.config import Config, ConfigError, default_config, load_config
from dataplane.command.logs import LogTargetError, setup_logging
from dataplane.command.statefile import read_state_file
from dataplane.main import main_upgrade, notify
from dataplane.main.adopted import AdoptedProcess
from dataplane.main.audit import AuditTargetError
from dataplane.main.changes import ChangeRefused
from dataplane.main.command_socket import CommandSocket
from dataplane.main.demo import DemoProcess, start_demo_backends, stop_demo_backends
from dataplane.main.errors import MainError
from dataplane.main.server import Supervisor
from dataplane.main.statsd import Drain, StatsdPoller
from dataplane.main.statsd_lines import Format

log = logging.getLogger("pysozu.main")

PROMETHEUS_BIND_RETRIES = 20  # every 0.5 s, after an upgrade


def print_config_problems(error: ConfigError) -> None:
    for line in [str(p) for p in error.problems] or [str(error)]:
        print(f"pysozu: {line}", file=sys.stderr)


def load(config_path: str | None) -> Config:
    """The config from the file, or the embedded default; raise `ConfigError`."""
    return load_config(config_path) if config_path else default_config()


def _write_pid_file(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(handle.name, path)
    except OSError as error:
        raise MainError(f"cannot write pid file {path}: {error.strerror or error}") from None


def _remove_pid_file(path: str) -> None:
    with contextlib.suppress(OSError, ValueError), open(path) as handle:
        if int(handle.read().strip()) == os.getpid():
            os.unlink(path)


def _apply_config(supervisor: Supervisor, config: Config) -> None:
    for request in config.generate_requests():
        try:
            supervisor.keeper.apply(request)
        except ChangeRefused as error:
            raise MainError(f"cannot apply the configuration ({request.verb}): {error}") from None
    # What the file says, before saved_state and the command socket add theirs: what the
    # first reload compares the file with.
    supervisor.keeper.file_state = supervisor.state.copy()


def _apply_saved_state(supervisor: Supervisor, path: str) -> None:
    if not os.path.exists(path):
        log.info("no saved state at %s yet", path)
        return
    try:
        requests, errors = read_state_file(path)
    except OSError as error:
        raise MainError(f"cannot read saved_state {path}: {error}") from None
    applied = 0
    for request in requests:
        try:
            supervisor.keeper.apply(request)
            applied += 1
        except ChangeRefused as refused:
            errors.append(f"{request.verb}: {refused}")
    for problem in errors:
        log.debug("saved state %s: %s", path, problem)
    log.info("loaded saved state %s: %d ok messages, %d errors", path, applied, len(errors))


def _configure(config_path: str | None) -> Config | None:
    """Load the config and set up logging; None (after saying why) when either fails."""
    try:
        config = load(config_path)
    except ConfigError as error:
        print_config_problems(error)
        return None
    try:
        setup_logging(config.log_target, config.log_level, colored=config.log_colored)
    except LogTargetError as error:
        print(f"pysozu: {error}", file=sys.stderr)
        return None
    for warning in config.warnings:
        log.warning("%s", warning)
    return config


def _serve(
    supervisor: Supervisor,
    command_socket: CommandSocket,
    upgraded: bool = False,
) -> int:
    supervisor.start_workers()
    supervisor.listen(command_socket)
    config = supervisor.config
    address = supervisor.prometheus_address or config.prometheus_address
    if address:
        from dataplane.main.prometheus_main import start_prometheus  # prometheus_client: 12 MB

        try:
            supervisor.prometheus = start_prometheus(supervisor, address)
        except (OSError, ValueError) as error:  # ValueError: not an address
            if not upgraded:
                raise MainError(f"cannot serve Prometheus metrics on {address}: {error}") from None
            _retry_prometheus(supervisor, address, PROMETHEUS_BIND_RETRIES)
    _start_statsd(supervisor, upgraded)
    log.info(
        "pysozu %s main process %d ready: command socket %s, %d workers",
        dataplane.__version__,
        os.getpid(),
        config.command_socket,
        config.worker_count,
    )
    return supervisor.run()


def _start_statsd(supervisor: Supervisor, upgraded: bool) -> None:
    """`[metrics] address`: sozu's StatsD drain, fed by main's polls of the workers."""
    metrics = supervisor.config.metrics
    if metrics is None or not metrics.address:
        return
    form = Format(metrics.prefix or "sozu", metrics.tagged_metrics, dataplane.__version__)
    try:
        drain = Drain(metrics.address, form)
    except (OSError, ValueError) as error:
        raise MainError(f"cannot send StatsD metrics to {metrics.address}: {error}") from None
    process_only = supervisor.config.disable_cluster_metrics
    poller = StatsdPoller(
        supervisor.loop, supervisor.pool, drain, lambda: supervisor.state, process_only
    )
    supervisor.statsd = poller
    poller.start(adopted=upgraded)
    log.info("sending StatsD metrics to %s every second", metrics.address)


def _retry_prometheus(supervisor: Supervisor, address: str, retries: int) -> None:
    """After an upgrade the previous main holds the address until it exits: try again."""

    from dataplane.main.prometheus_main import start_prometheus

    def attempt() -> None:
        try:
            supervisor.prometheus = start_prometheus(supervisor, address)
        except OSError as error:
            if retries > 1:
                _retry_prometheus(supervisor, address, retries - 1)
            else:
                log.error("cannot serve Prometheus metrics on %s: %s", address, error)

    supervisor.loop.call_later(0.5, attempt)


def _clean_up(
    supervisor: Supervisor,
    command_socket: CommandSocket | None,
    demo: Sequence[DemoProcess],
) -> None:
    """At exit; after an upgrade, leave the socket file and the demo backends to the new main."""
    supervisor.close()
    if command_socket is not None:
        if supervisor.handed_over:
            command_socket.release()
        else:
            command_socket.close()
    if not supervisor.handed_over:
        stop_demo_backends(demo)
        notify.stopping()
    if supervisor.config.pid_file_path:
        _remove_pid_file(supervisor.config.pid_file_path)


def run_main(config_path: str | None, prometheus_address: str | None = None) -> int:
    """Run main in the foreground; the exit status. `prometheus_address` overrides the
    config's `[prometheus] address`."""
    config = _configure(config_path)
    if config is None:
        return 1
    try:
        supervisor = Supervisor(config, config_path)
    except AuditTargetError as error:
        log.error("%s", error)
        return 1
    supervisor.prometheus_address = prometheus_address
    demo: list[subprocess.Popen[bytes]] = []
    command_socket: CommandSocket | None = None
    code = 1
    try:
        command_socket = CommandSocket(config.command_socket)
        if config.pid_file_path:
            _write_pid_file(config.pid_file_path)
        if config_path is None:
            log.info("no configuration file: embedded default config and demo backends")
            demo = start_demo_backends()
            supervisor.demo_backend_pids = [process.pid for process in demo]
        _apply_config(supervisor, config)
        if config.saved_state:
            _apply_saved_state(supervisor, config.saved_state)
        supervisor.loop.call_later(0, notify.ready)
        code = _serve(supervisor, command_socket)
    except MainError as error:
        log.error("%s", error)
    finally:
        _clean_up(supervisor, command_socket, demo)
    log.info("main process exits with status %d", code)
    return code


def run_upgraded_main(confirm_fd: int, upgrade_fd: int) -> int:
    """The new main after `upgrade`: take over from the previous one, confirm, serve."""
    try:
        data = main_upgrade.read_upgrade_data(upgrade_fd)
    except main_upgrade.UpgradeError as error:
        print(f"pysozu: {error}", file=sys.stderr)
        return 1
    config = _configure(data.config_path)
    if config is None:
        return 1
    try:
        supervisor = Supervisor(config, data.config_path)
    except AuditTargetError as error:
        log.error("%s", error)
        return 1
    supervisor.prometheus_address = data.prometheus_address
    command_socket: CommandSocket | None = None
    demo: list[AdoptedProcess] = []
    confirmed = False
    code = 1
    try:
        main_upgrade.restore(
            data,
            supervisor.pool,
            supervisor.sockets,
            supervisor.state,
            supervisor.figures,
            config.command_buffer_size,
            config.max_command_buffer_size,
        )
        supervisor.keeper.file_state = main_upgrade.file_state(data, config)
        supervisor.prober.adopt(data.health_prober, data.unhealthy_backends)
        command_socket = CommandSocket.adopt(data.command_socket_path, data.command_socket_fd)
        if config.pid_file_path:
            # Before confirming: the old main exits on the confirmation and removes the pid
            # file only if it still holds its own pid, so it must already hold ours.
            _write_pid_file(config.pid_file_path)
        main_upgrade.confirm(confirm_fd)
        confirmed = True
        log.info("took over from the previous main: %d workers adopted", len(data.workers))
        supervisor.demo_backend_pids = data.demo_backend_pids
        demo = [AdoptedProcess(pid) for pid in data.demo_backend_pids]
        supervisor.loop.call_later(0, lambda: notify.new_main(os.getpid()))
        code = _serve(supervisor, command_socket, upgraded=True)
    except (MainError, OSError) as error:
        log.error("could not take over from the previous main: %s", error)
    finally:
        if not confirmed:  # the previous main still owns all of it: touch nothing
            supervisor.pool.release()
            supervisor.handed_over = True
        _clean_up(supervisor, command_socket, demo)
    log.info("main process exits with status %d", code)
    return code
