"""`pysozu start`: load the config, bind, spawn the workers, serve until stopped.

Startup order (as sozu's `begin_main_process`, with the state applied before the workers
exist so that they boot with it): config -> logging -> command socket -> pid file -> demo
backends (embedded default config only) -> the config's requests into main's state (binding
active listeners) -> `saved_state` -> workers -> loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile

import dataplane
from dataplane.command.config import Config, ConfigError, default_config, load_config
from dataplane.command.statefile import read_state_file
from dataplane.main.changes import ChangeRefused
from dataplane.main.command_socket import CommandSocket
from dataplane.main.demo import start_demo_backends, stop_demo_backends
from dataplane.main.errors import MainError
from dataplane.main.log import LogTargetError, setup_logging
from dataplane.main.server import Supervisor

log = logging.getLogger("pysozu.main")


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


def run_main(config_path: str | None) -> int:
    """Run main in the foreground; the exit status."""
    try:
        config = load(config_path)
    except ConfigError as error:
        print_config_problems(error)
        return 1
    try:
        setup_logging(config.log_target, config.log_level)
    except LogTargetError as error:
        print(f"pysozu: {error}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        log.warning("%s", warning)
    supervisor = Supervisor(config, config_path)
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
        _apply_config(supervisor, config)
        if config.saved_state:
            _apply_saved_state(supervisor, config.saved_state)
        supervisor.pool.start()
        supervisor.listen(command_socket)
        log.info(
            "pysozu %s main process ready: command socket %s, %d workers",
            dataplane.__version__,
            config.command_socket,
            config.worker_count,
        )
        code = supervisor.run()
    except MainError as error:
        log.error("%s", error)
    finally:
        supervisor.close()
        if command_socket is not None:
            command_socket.close()
        stop_demo_backends(demo)
        if config.pid_file_path:
            _remove_pid_file(config.pid_file_path)
    log.info("main process exits with status %d", code)
    return code
