"""`--canary-*` flags of `pysozu frontend http|https add`: the route's canary alternative.

A pysozu extension (docs/canary.md): `--canary-cluster` names the cluster that serves the
requests the rule picks (`--canary-header` with `--canary-header-value` or
`--canary-header-pattern`, `--canary-cookie`, `--canary-weight` of `--canary-weight-total`).
"""

from __future__ import annotations

import argparse

from dataplane.command.canary_rules import canary_problem
from dataplane.command.messages import Canary

_RULE_FLAGS = ("header", "header_value", "header_pattern", "cookie", "weight", "weight_total")


def add_canary_flags(add: argparse.ArgumentParser) -> None:
    flags = add.add_argument_group("canary (pysozu extension, docs/canary.md)")
    flags.add_argument(
        "--canary-cluster", metavar="CLUSTER", help="cluster serving the requests the rule picks"
    )
    flags.add_argument(
        "--canary-header",
        metavar="NAME",
        help='request header: "always" picks the canary, "never" the route\'s cluster',
    )
    flags.add_argument(
        "--canary-header-value", metavar="VALUE", help="with --canary-header: exact value"
    )
    flags.add_argument(
        "--canary-header-pattern",
        metavar="REGEX",
        help="with --canary-header: a regex found in the value",
    )
    flags.add_argument(
        "--canary-cookie", metavar="NAME", help='cookie: "always" or "never", as the header'
    )
    flags.add_argument(
        "--canary-weight",
        type=int,
        metavar="N",
        help="otherwise, N requests in --canary-weight-total go to the canary (default 0)",
    )
    flags.add_argument("--canary-weight-total", type=int, metavar="TOTAL", help="default 100")


def canary_from(a: argparse.Namespace) -> Canary | None:
    """The canary the flags describe (None without --canary-cluster); bad values are
    ArgumentTypeErrors."""
    given = [name for name in _RULE_FLAGS if getattr(a, f"canary_{name}") is not None]
    if a.canary_cluster is None:
        if given:
            flags = ", ".join("--canary-" + name.replace("_", "-") for name in given)
            raise argparse.ArgumentTypeError(f"{flags} need --canary-cluster")
        return None
    if a.route != "id":
        raise argparse.ArgumentTypeError("--canary-cluster needs a route to a cluster (id)")
    canary = Canary(cluster_id=a.canary_cluster)
    for name in given:
        setattr(canary, name, getattr(a, f"canary_{name}"))
    problem = canary_problem(canary)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"canary: {problem}")
    return canary
