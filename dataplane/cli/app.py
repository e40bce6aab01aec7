"""`pysozu`: run the proxy (`start`), or send one command to a running one.

Exit status: 0 when main answered OK, 1 when it answered FAILURE (the message is on stderr) or
the configuration is invalid, 2 for a usage error, 3 when main could not be reached or did not
answer in time. With `-j`, stdout holds JSON in every case: main's answer (enum values by
name), or a FAILURE-shaped object for the CLI's own errors (usage, configuration, main
unreachable); the human message still goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from dataplane.cli import output
from dataplane.cli.client import CommandClient, CommandError
from dataplane.cli.tree import build_parser
from dataplane.cli.unserved import unserved_flags
from dataplane.cli.upgrade import say, upgrade_everything, upgrade_one_worker
from dataplane.command.config import Config, ConfigError, default_config, load_config
from dataplane.command.messages import Request
from dataplane.command.responses import Response, ResponseStatus

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
NO_DEFAULT_TIMEOUT = {"shutdown", "events", "upgrade"}


def config_path(args: argparse.Namespace) -> str | None:
    return args.config or os.environ.get("SOZU_CONFIG") or None


def _error(message: str) -> None:
    print(f"pysozu: {message}", file=sys.stderr)


def _config_problems(error: ConfigError, as_json: bool = False) -> None:
    lines = [str(p) for p in error.problems] or [str(error)]
    for line in lines:
        _error(line)
    if as_json:
        output.print_json_failure("invalid configuration:\n" + "\n".join(lines))


def _fail(message: str, as_json: bool) -> None:
    """An error of the CLI itself: on stderr, and as a JSON FAILURE on stdout with `-j`."""
    _error(message)
    if as_json:
        output.print_json_failure(message)


def _wants_json(argv: Sequence[str]) -> bool:
    return any(arg in ("-j", "--json") for arg in argv)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """argparse's usage errors (exit 2) are JSON too when `-j` is on the command line."""
    words = sys.argv[1:] if argv is None else list(argv)
    if not _wants_json(words):
        return parser.parse_args(words)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return parser.parse_args(words)
    except SystemExit as leaving:
        sys.stderr.write(said.getvalue())
        if leaving.code not in (0, None):
            lines = said.getvalue().strip().splitlines()
            message = lines[-1] if lines else "usage error"
            output.print_json_failure(message.removeprefix("pysozu: error: "))
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    run = getattr(args, "run", None)
    try:
        if run == "start":
            from dataplane.main.run import run_main

            set_process_title("pysozu main")
            return run_main(config_path(args), args.prometheus_address)
        if run == "worker":
            set_process_title(f"pysozu worker {args.id}")
            return _worker(args)
        if run == "main":
            from dataplane.main.run import run_upgraded_main

            set_process_title("pysozu main")

            return run_upgraded_main(args.fd, args.upgrade_fd)
        if run == "config_check":
            return _config_check(args)
        if run == "top":
            return _top(args)
        return _command(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pysozu events | head`
        return 0


def set_process_title(title: str) -> None:
    """What `ps` and /proc/<pid>/cmdline show (and /proc/<pid>/comm, cut to 15 bytes), in
    place of the interpreter's command line, which names neither the role nor the worker."""
    import setproctitle

    setproctitle.setproctitle(title)


def _worker(args: argparse.Namespace) -> int:
    from dataplane.proxy.worker.boot import begin_worker_process

    max_buffer = args.max_command_buffer_size or 2 * args.command_buffer_size
    return begin_worker_process(
        args.fd,
        args.scm,
        args.configuration_state_fd,
        args.id,
        args.command_buffer_size,
        max_buffer,
    )


def _config_check(args: argparse.Namespace) -> int:
    path = config_path(args)
    if path is None:
        _fail("config check needs a configuration file: pysozu config check -c FILE", args.json)
        return EXIT_USAGE
    try:
        config = load_config(path)
    except ConfigError as error:
        _config_problems(error, args.json)
        return EXIT_FAILURE
    for warning in config.warnings:
        _error(f"warning: {warning}")
    if args.json:
        output.print_json(Response.ok(f"{path}: configuration is valid"))
    else:
        print(f"{path}: configuration is valid")
    return 0


def _load(args: argparse.Namespace) -> Config | None:
    """The config named by -c or $SOZU_CONFIG (else the embedded one); None if invalid."""
    path = config_path(args)
    try:
        return load_config(path) if path else default_config()
    except ConfigError as error:
        _config_problems(error, args.json)
        return None


def _top(args: argparse.Namespace) -> int:
    from dataplane.cli.top import run_top

    if args.json:  # stdout is JSON whatever happens with -j: top has none to give
        _fail("top draws text frames; for JSON use `pysozu metrics get --json`", True)
        return EXIT_USAGE
    config = _load(args)
    if config is None:
        return EXIT_FAILURE
    for flag in unserved_flags(args):
        _error(f"warning: {flag}")
    return run_top(args, config)


def _command(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAILURE
    try:
        request: Request = args.build(args)
    except argparse.ArgumentTypeError as error:
        _fail(str(error), args.json)
        return EXIT_USAGE
    for flag in unserved_flags(args):
        _error(f"warning: {flag}")
    if args.timeout is not None:
        timeout = args.timeout / 1000 if args.timeout > 0 else None
    elif args.command in NO_DEFAULT_TIMEOUT:
        timeout = None
    else:
        timeout = config.ctl_command_timeout / 1000

    def connect() -> CommandClient:
        return CommandClient(config.command_socket, timeout, config.max_command_buffer_size)

    try:
        if args.command == "upgrade":
            tell = (lambda _line: None) if args.json else say
            if args.worker is not None:
                response = upgrade_one_worker(connect, args.worker, tell)
            else:
                response = upgrade_everything(connect, tell)
            return _print_final(response, args)
        with connect() as client:
            if args.show == "events":
                return _stream_events(client, request, args.json)
            response = client.request(request)
            refresh = getattr(args, "refresh", None)
            while refresh and response.status == ResponseStatus.OK:  # `metrics get -r N`
                _print_final(response, args)
                time.sleep(refresh)
                response = client.request(request)
            if getattr(args, "h2_enabled", None) is not None and response.status == 0:
                response = _toggle_h2(client, response, args)
    except CommandError as error:
        _fail(str(error), args.json)
        return EXIT_UNREACHABLE
    return _print_final(response, args)


def _print_final(response: Response, args: argparse.Namespace) -> int:
    if args.json:
        output.print_json(response)
    elif response.status == ResponseStatus.OK:
        output.SHOW[args.show](response, sys.stdout)
    if response.status != ResponseStatus.OK:
        _error(response.message or "main answered FAILURE")
        return EXIT_FAILURE
    return 0


def _stream_events(client: CommandClient, request: Request, as_json: bool) -> int:
    for response in client.responses(request):
        if response.status == ResponseStatus.FAILURE:
            _error(response.message)
            if as_json:
                output.print_json(response)
            return EXIT_FAILURE
        if as_json:
            output.print_json(response)
        else:
            output.show_event(response, sys.stdout)
    return 0


def _toggle_h2(client: CommandClient, found: Response, args: argparse.Namespace) -> Response:
    """`cluster h2 enable|disable`: re-submit the cluster with `http2` changed (as sozu)."""
    answers: Any = found.content.value if found.content else None
    main = answers.map.get("main") if answers is not None else None
    infos = main.value.vec if main is not None and main.kind == "clusters" else []
    if not infos or infos[0].configuration is None:
        return Response.failure(f"cluster {args.id} not found")
    cluster = msgspec.structs.replace(infos[0].configuration, http2=args.h2_enabled)
    return client.request(Request.of(add_cluster=cluster))
