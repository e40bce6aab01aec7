"""The `frontend http|https add` flags of custom error pages (docs/custom-errors.md): kept
apart from `command/custom_errors_rules.py` so that a worker never imports argparse."""

from __future__ import annotations

import argparse

from dataplane.command.custom_errors_rules import custom_errors_problem
from dataplane.command.messages import CustomErrors


def add_custom_errors_flags(add: argparse.ArgumentParser) -> None:
    flags = add.add_argument_group("custom error pages (docs/custom-errors.md)")
    flags.add_argument(
        "--error-codes", metavar="CODES", help="comma-separated statuses served by --error-cluster"
    )
    flags.add_argument("--error-cluster", metavar="CLUSTER", help="cluster serving error pages")
    flags.add_argument(
        "--error-header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="static header of the error request, e.g. X-Namespace=default (repeatable)",
    )


def custom_errors_from(a: argparse.Namespace) -> CustomErrors | None:
    """The flags' policy (None without --error-codes); bad values are ArgumentTypeErrors."""
    if a.error_codes is None:
        if a.error_cluster is not None or a.error_header:
            raise argparse.ArgumentTypeError(
                "--error-cluster and --error-header need --error-codes"
            )
        return None
    if a.error_cluster is None:
        raise argparse.ArgumentTypeError("--error-codes needs --error-cluster")
    try:
        codes = [int(code) for code in a.error_codes.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--error-codes {a.error_codes!r}: not integers") from None
    headers = {}
    for pair in a.error_header:
        name, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--error-header {pair!r}: NAME=VALUE")
        headers[name] = value
    errors = CustomErrors(codes=codes, cluster_id=a.error_cluster, headers=headers)
    problem = custom_errors_problem(errors)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"custom_errors: {problem}")
    return errors
