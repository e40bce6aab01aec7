"""The `pysozu` command tree: sozu 2.1's verbs, flags and short options (bin/src/cli.rs).

This module holds the root and the lifecycle, state, metrics and misc commands; clusters,
backends and certificates are in `tree_clusters`, frontends and listeners in `tree_routing`.
"""

from __future__ import annotations

import argparse

import dataplane
from dataplane.cli.args import comma_separated, unsigned
from dataplane.cli.top import add_top
from dataplane.cli.tree_base import (
    GLOBAL,
    Build,
    Subparsers,
    absolute,
    global_options,
    group,
    leaf,
)
from dataplane.cli.tree_clusters import add_backend_tree, add_certificate_tree, add_cluster_tree
from dataplane.cli.tree_routing import add_frontend_tree, add_listener_tree
from dataplane.command.messages import (
    Empty,
    HardStopOptions,
    MetricsConfiguration,
    QueryMetricsOptions,
    Request,
)


def build_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="pysozu",
        description="pysozu: a hot-reconfigurable HTTP reverse proxy (sozu's CLI and config)",
        parents=[global_options()],  # its own copy: set_defaults below changes its actions
    )
    root.set_defaults(config=None, timeout=None, json=False)
    root.add_argument(
        "-V", "--version", action="version", version=f"pysozu {dataplane.__version__}"
    )
    top = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_lifecycle(top)
    _add_state(top)
    add_cluster_tree(top)
    add_backend_tree(top)
    add_frontend_tree(top)
    add_listener_tree(top)
    add_certificate_tree(top)
    _add_misc(top)
    add_top(top)
    return root


def _add_lifecycle(top: Subparsers) -> None:
    start = leaf(top, "start", "launch the main process (foreground)")
    start.set_defaults(run="start")
    start.add_argument(
        "--prometheus-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics ([prometheus] address)",
    )
    _add_internal(top)
    shutdown = leaf(top, "shutdown", "shut the proxy down (drains connections unless --hard)")
    shutdown.set_defaults(build=_shutdown)
    shutdown.add_argument("--hard", action="store_true", help="do not wait for connections")
    shutdown.add_argument(
        "--deadline",
        type=int,
        metavar="SECONDS",
        help="drain for at most this long, then close what is left",
    )
    upgrade = leaf(
        top,
        "upgrade",
        "upgrade the main process then every worker, or one worker (--worker)",
        _upgrade,
    )
    upgrade.add_argument("--worker", type=unsigned, help="upgrade this worker only")
    leaf(
        top,
        "status",
        "information on the running workers",
        lambda a: Request.of(status=Empty()),
        show="workers",
    )
    logging = leaf(
        top, "logging", "change the logging level", lambda a: Request.of(logging=a.filter)
    )
    logging.add_argument("filter", help="level or filter, e.g. info, debug, sozu=debug,info")
    reload = leaf(
        top,
        "reload",
        "reload the routing configuration (applied as a diff)",
        lambda a: Request.of(reload_configuration=absolute(a.file) if a.file else ""),
    )
    reload.add_argument("-f", "--file", help="use this configuration file instead")


def _add_internal(top: Subparsers) -> None:
    """`worker` and `main`: started by main itself with these exact flags, unlisted in --help."""
    worker = top.add_parser(
        "worker",
        parents=[GLOBAL],
        description="internal: a proxy worker, started by main (not to be run by hand)",
    )
    worker.set_defaults(run="worker", build=None)
    for name, help_text in (
        ("--id", "worker id, chosen by main"),
        ("--fd", "descriptor of the command channel to main"),
        ("--scm", "descriptor of the socket the listening sockets arrive on (SCM_RIGHTS)"),
        ("--configuration-state-fd", "descriptor of the file holding the state to start with"),
    ):
        worker.add_argument(name, type=int, required=True, metavar="N", help=help_text)
    worker.add_argument(
        "--command-buffer-size",
        type=int,
        default=1_000_000,
        metavar="BYTES",
        help="command channel buffer size, in bytes (default: %(default)s)",
    )
    worker.add_argument(
        "--max-command-buffer-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="largest command channel buffer, in bytes (default: twice --command-buffer-size)",
    )
    main = top.add_parser(
        "main",
        parents=[GLOBAL],
        description="internal: the new main process of an upgrade, started by the old one "
        "(not to be run by hand)",
    )
    main.set_defaults(run="main", build=None)
    main.add_argument(
        "--fd",
        type=int,
        required=True,
        metavar="N",
        help="descriptor of the socket on which to confirm the upgrade to the old main",
    )
    main.add_argument(
        "--upgrade-fd",
        type=int,
        required=True,
        metavar="N",
        help="descriptor of the file holding the upgrade data (state, workers, sockets)",
    )
    for name, default in (
        ("--command-buffer-size", 1_000_000),
        ("--max-command-buffer-size", None),
    ):
        main.add_argument(
            name,
            type=int,
            default=default,
            metavar="BYTES",
            help="command channel buffer size, in bytes; accepted because sozu passes it, "
            "the new main takes it from the configuration file",
        )


def _shutdown(a: argparse.Namespace) -> Request:
    if a.deadline is not None and a.deadline <= 0:
        raise argparse.ArgumentTypeError("--deadline must be a positive number of seconds")
    options = HardStopOptions(deadline_seconds=None if a.hard else a.deadline)
    return Request.of(**{"hard_stop" if a.hard else "soft_stop": options})


def _upgrade(a: argparse.Namespace) -> Request:
    if a.worker is not None:
        return Request.of(upgrade_worker=a.worker)
    return Request.of(upgrade_main=Empty())


def _add_state(top: Subparsers) -> None:
    state = group(top, "state", "state management")
    save = leaf(
        state,
        "save",
        "save the state to a file",
        lambda a: Request.of(save_state=absolute(a.file)),
    )
    save.add_argument("-f", "--file", required=True, help="path of the state file to write")
    load = leaf(
        state,
        "load",
        "load a state file (merged into the running state)",
        lambda a: Request.of(load_state=absolute(a.file)),
    )
    load.add_argument("-f", "--file", required=True, help="path of the state file to read")
    leaf(
        state,
        "stats",
        "counts of requests received since startup",
        lambda a: Request.of(count_requests=Empty()),
        show="request_counts",
    )


def _metrics_get(a: argparse.Namespace) -> Request:
    return Request.of(
        query_metrics=QueryMetricsOptions(
            list=a.list,
            cluster_ids=a.clusters,
            backend_ids=a.backends,
            metric_names=a.names,
            no_clusters=a.no_clusters,
            workers=a.workers,
        )
    )


def _configure_metrics(setting: MetricsConfiguration) -> Build:
    return lambda a: Request.of(configure_metrics=setting)


def _add_misc(top: Subparsers) -> None:
    metrics = group(top, "metrics", "statistics of main and its workers")
    for name, setting in (
        ("enable", MetricsConfiguration.ENABLED),
        ("disable", MetricsConfiguration.DISABLED),
        ("clear", MetricsConfiguration.CLEAR),
    ):
        leaf(metrics, name, f"{name} local metrics", _configure_metrics(setting))
    get = leaf(metrics, "get", "get metrics", _metrics_get, show="metrics")
    get.add_argument("-l", "--list", action="store_true", help="list the available metrics")
    get.add_argument(
        "-r", "--refresh", type=unsigned, metavar="SECONDS", help="ask again every SECONDS seconds"
    )
    get.add_argument(
        "-n",
        "--names",
        type=comma_separated(str),
        action="extend",
        default=[],
        metavar="NAME,...",
        help="only these metrics: comma-separated, or the option repeated",
    )
    get.add_argument(
        "-k",
        "--clusters",
        type=comma_separated(str),
        action="extend",
        default=[],
        metavar="ID,...",
        help="metrics of these clusters: ids comma-separated, or the option repeated",
    )
    get.add_argument(
        "-b",
        "--backends",
        type=comma_separated(str),
        action="extend",
        default=[],
        metavar="ID,...",
        help="metrics of these backends: ids comma-separated, or the option repeated",
    )
    get.add_argument(
        "--no-clusters",
        action="store_true",
        help="only the metrics of main and the workers, none of clusters or backends",
    )
    get.add_argument(
        "-w",
        "--workers",
        action="store_true",
        help="each worker's metrics apart, instead of summed over the workers",
    )
    config = group(top, "config", "configuration file management")
    leaf(config, "check", "check the configuration file (-c) and print every problem").set_defaults(
        run="config_check"
    )
    leaf(
        top,
        "events",
        "print proxy events as they happen",
        lambda a: Request.of(subscribe_events=Empty()),
        show="events",
    )
    limit = group(top, "connection-limit", "per-(cluster, source IP) connection limit")
    set_limit = leaf(
        limit,
        "set",
        "set the limit (0: unlimited)",
        lambda a: Request.of(set_max_connections_per_ip=a.limit),
    )
    set_limit.add_argument(
        "limit",
        type=unsigned,
        metavar="N",
        help="connections one source IP may hold to one cluster at a time (0: unlimited)",
    )
    leaf(
        limit,
        "remove",
        "remove the limit (same as set 0)",
        lambda a: Request.of(set_max_connections_per_ip=0),
    )
    leaf(
        limit,
        "show",
        "show the limit",
        lambda a: Request.of(query_max_connections_per_ip=Empty()),
        show="json",
    )
