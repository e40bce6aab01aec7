"""The pieces every part of the command tree uses: global options, groups and leaves.

Every leaf command sets `build` (Namespace -> Request) and `show` (how `output.py` prints the
answer), or `run` for what happens locally. The global options `-c/--config`, `-t/--timeout`
(ms) and `-j/--json` are accepted on every level.
"""

from __future__ import annotations

import argparse
import os.path
from collections.abc import Callable
from typing import Any

from dataplane.cli.args import unsigned
from dataplane.command.messages import Request

Build = Callable[[argparse.Namespace], Request]
Subparsers = Any  # argparse's _SubParsersAction is private


def global_options(long_timeout: bool = True) -> argparse.ArgumentParser:
    """-c/-t/-j, accepted after any subcommand too (values given there win)."""
    parent = argparse.ArgumentParser(add_help=False)
    timeout_flags = ("-t", "--timeout") if long_timeout else ("-t",)
    parent.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="configuration file (default: $SOZU_CONFIG, else the embedded one)",
    )
    parent.add_argument(
        *timeout_flags,
        dest="timeout",
        type=unsigned,
        default=argparse.SUPPRESS,
        metavar="MS",
        help="how long to wait for main's answer, in ms (0: forever)",
    )
    parent.add_argument(
        "-j",
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the answer as JSON",
    )
    return parent


GLOBAL = global_options()
# `cluster health-check set --timeout` is the check's timeout (as in sozu): `-t` stays global.
GLOBAL_SHORT_TIMEOUT = global_options(long_timeout=False)


def group(subparsers: Subparsers, name: str, help_text: str) -> Subparsers:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, parents=[GLOBAL])
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def absolute(path: str) -> str:
    """Main resolves relative paths against its own directory: send an absolute one."""
    return os.path.abspath(path)


def leaf(
    subparsers: Subparsers,
    name: str,
    help_text: str,
    build: Build | None = None,
    show: str = "message",
    parent: argparse.ArgumentParser = GLOBAL,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=help_text, parents=[parent]
    )
    parser.set_defaults(build=build, show=show)
    return parser
