"""sozu 2.1's TOML configuration, loaded into a typed `Config`.

A sozu user's file loads unchanged: every top-level key of sozu 2.1 with sozu's defaults,
`[[listeners]]` (config_listeners), `[clusters.<id>]` (config_clusters), `[metrics]`, plus
pysozu's `[prometheus] address = "host:port"`. Problems are collected, not raised one by one:
`ConfigError.problems` lists each with its file, table and key. Keys that sozu knows but pysozu
does not act on load with one warning each (`Config.warnings`); an unknown key is an error, at
the top level too (sozu ignores unknown top-level keys; it denies them everywhere else), with a
"did you mean" when a known key is close. A top-level `[hsts]` table (which sozu's docs lead to)
is a warning: it applies to nothing.

Once every object in the file is valid on its own, the load replays `Config.generate_requests`
on an empty `ConfigState` (reporting conflicts, such as two identical routes, at the table they
come from), so a configuration that loads is one the proxy accepts.
As in sozu, two `[[listeners]]` never share an address, even a TCP and a UDP one.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.config_clusters import parse_cluster
from dataplane.command.config_listeners import (
    H2_MIN_BUFFER_SIZE,
    AnyListenerConfig,
    Defaults,
    parse_listener,
)
from dataplane.command.config_model import EMBEDDED_DEFAULT, Config
from dataplane.command.config_reader import ConfigError, ConfigProblem, Report, Table
from dataplane.command.messages import (
    AccessLogFormat,
    HttpsListenerConfig,
    MetricDetail,
    ServerMetricsConfig,
)
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError

__all__ = [
    "Config",
    "ConfigError",
    "ConfigProblem",
    "default_config",
    "load_config",
    "parse_config",
]

LOG_SCHEMES = ("udp://", "tcp://", "unix://", "file://")
# sozu keys that pysozu accepts but does not act on, and why (one warning each when set).
NOT_IMPLEMENTED = {
    "handle_process_affinity": "pysozu does not pin workers to CPU cores",
    "splice_pipe_capacity_bytes": "pysozu does not use splice(2)",
    "slab_entries_per_connection": "pysozu has no slab allocator",
    "zombie_check_interval": "no pysozu connection can outlive its own timeouts "
    "(front_timeout, back_timeout, request_timeout), so there are no zombies to sweep",
    "accept_queue_timeout": "pysozu has no accept queue of its own: while a worker is at "
    "max_connections, new connections wait in the kernel's listen backlog",
    "basic_auth_max_credential_bytes": "credentials are limited to 4096 bytes",
}
_DETAIL = {
    "PROCESS": MetricDetail.DETAIL_PROCESS,
    "FRONTEND": MetricDetail.DETAIL_FRONTEND,
    "CLUSTER": MetricDetail.DETAIL_CLUSTER,
    "BACKEND": MetricDetail.DETAIL_BACKEND,
}
U32 = 2**32 - 1


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load a TOML file; raise ConfigError listing every problem (unreadable file included)."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = file.read()
        text = data.decode("utf-8")
    except OSError as error:
        raise ConfigError(
            [ConfigProblem(source, "", None, f"cannot read: {error.strerror}")]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(source, "", None, "not UTF-8 text")]) from None
    return _parse(text, source, os.path.dirname(os.path.abspath(source)))


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse TOML text; relative paths in it are relative to the current directory."""
    return _parse(text, source, os.getcwd())


def default_config() -> Config:
    """The embedded default.toml: one HTTP listener on 127.0.0.1:8080 and a demo cluster."""
    text = resources.files("dataplane.command").joinpath("default.toml").read_text("utf-8")
    return _parse(text, EMBEDDED_DEFAULT, os.getcwd())


def _parse(text: str, source: str, base_dir: str) -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([ConfigProblem(source, "", None, f"invalid TOML: {error}")]) from None
    report = Report(file=source, base_dir=base_dir)
    root = Table(report, "", document)
    config = _top_level(root, base_dir)
    config.source = source
    defaults = Defaults(
        config.front_timeout, config.back_timeout, config.connect_timeout, config.request_timeout
    )
    by_address: dict[SocketAddress, AnyListenerConfig] = {}
    for table in root.tables("listeners"):
        listener = parse_listener(table, defaults)
        if listener is None:
            continue
        if listener.address in by_address:
            table.error("address", f"{listener.address} is already used by another listener")
            continue
        by_address[listener.address] = listener
        config.listener_origins[id(listener)] = table.name
    clusters = root.table("clusters")
    if clusters is not None:
        for cluster_id in clusters.data:
            cluster_table = clusters.table(cluster_id)
            if cluster_table is None:
                continue
            known = set(by_address)
            cluster = parse_cluster(cluster_table, cluster_id, by_address, defaults)
            for address in by_address.keys() - known:  # listeners the frontends created
                config.listener_origins[id(by_address[address])] = cluster_table.name
            if cluster is not None:
                config.clusters[cluster_id] = cluster
    config.listeners = list(by_address.values())
    _check_whole(config, root)
    # Unknown top-level keys are errors, as unknown keys in listeners, clusters, frontends and
    # backends are (sozu ignores them silently at the top level only: a typo such as
    # `worker_cout` would go unnoticed). The top-level [hsts] of sozu's own docs: a warning.
    root.finish(strict=True, ignored={"hsts": _TOP_LEVEL_HSTS})
    if not report.problems:  # conflicts between objects, once each object is valid
        _replay(config, report)
    if report.problems:
        raise ConfigError(report.problems)
    config.warnings = report.warnings
    return config


_TOP_LEVEL_HSTS = "a top-level [hsts] table applies to nothing: write [listeners.hsts]"


def _top_level(root: Table, base_dir: str) -> Config:
    socket_path = root.text("command_socket")
    command_socket = os.path.abspath(
        os.path.join(base_dir, socket_path) if socket_path else "sozu.sock"
    )
    saved_state = root.text("saved_state")
    buffer_size = root.integer("command_buffer_size", 1_000_000, low=1)
    config = Config(
        command_socket=command_socket,
        command_buffer_size=buffer_size,
        max_command_buffer_size=root.integer("max_command_buffer_size", buffer_size * 2, low=1),
        ctl_command_timeout=root.integer("ctl_command_timeout", 1000),
        worker_count=root.integer("worker_count", 2, low=1, high=65535),
        worker_automatic_restart=root.flag("worker_automatic_restart", True),
        worker_timeout=root.integer("worker_timeout", 10, low=1, high=U32),
        handle_process_affinity=root.flag("handle_process_affinity", False),
        pid_file_path=root.text("pid_file_path"),
        saved_state=os.path.normpath(os.path.join(base_dir, saved_state)) if saved_state else None,
        automatic_state_save=root.flag("automatic_state_save", False),
        log_level=root.text("log_level", "info"),
        log_target=_log_target(root, "log_target", "stdout"),
        log_colored=root.flag("log_colored", False),
        access_logs_target=_log_target(root, "access_logs_target", None),
        access_logs_format=root.choice(
            "access_logs_format", AccessLogFormat, AccessLogFormat.ASCII
        ),
        access_logs_colored=root.flag("access_logs_colored"),
        audit_logs_target=_audit_target(root, "audit_logs_target", base_dir),
        audit_logs_json_target=_audit_target(root, "audit_logs_json_target", base_dir),
        max_connections=root.integer("max_connections", 10_000, low=1),
        min_buffers=root.integer("min_buffers", 1),
        max_buffers=root.integer("max_buffers", 1000, low=1),
        buffer_size=root.integer("buffer_size", 16_393, low=1),
        slab_entries_per_connection=root.integer("slab_entries_per_connection"),
        front_timeout=root.integer("front_timeout", 60, high=U32),
        back_timeout=root.integer("back_timeout", 30, high=U32),
        connect_timeout=root.integer("connect_timeout", 3, high=U32),
        request_timeout=root.integer("request_timeout", 10, high=U32),
        zombie_check_interval=root.integer("zombie_check_interval", 1800, low=1, high=U32),
        accept_queue_timeout=root.integer("accept_queue_timeout", 60, high=U32),
        evict_on_queue_full=root.flag("evict_on_queue_full", False),
        activate_listeners=root.flag("activate_listeners", True),
        max_connections_per_ip=root.integer("max_connections_per_ip", 0),
        retry_after=root.integer("retry_after", 60, high=U32),
        basic_auth_max_credential_bytes=root.integer("basic_auth_max_credential_bytes", 0) or 4096,
        splice_pipe_capacity_bytes=root.integer("splice_pipe_capacity_bytes"),
        command_allowed_uids=_uids(root),
        disable_cluster_metrics=root.flag("disable_cluster_metrics", False),
        metrics=_metrics(root),
        prometheus_address=_prometheus(root),
    )
    for key, reason in NOT_IMPLEMENTED.items():
        if root.has(key):
            root.warn(key, f"accepted but ignored: {reason}")
    if config.automatic_state_save and config.saved_state is None:
        root.error("automatic_state_save", "needs saved_state (the file to save to)")
    if config.min_buffers > config.max_buffers:
        root.warn("min_buffers", f"larger than max_buffers, lowered to {config.max_buffers}")
        config.min_buffers = config.max_buffers
    return config


def _log_target(root: Table, key: str, default: str | None) -> Any:
    target = root.text(key, default)
    if target is not None and target != "stdout" and not target.startswith(LOG_SCHEMES):
        root.error(key, f"{target!r}: expected stdout, udp://, tcp://, unix:// or file://")
        return default
    return target


def _audit_target(root: Table, key: str, base_dir: str) -> str | None:
    """sozu's plain file path (relative to the config's directory), or, as a pysozu
    extension, a log target (stdout, stderr, file://, udp://, tcp://, unix://)."""
    target: str | None = root.text(key)
    if target is None or target in ("stdout", "stderr") or target.startswith(LOG_SCHEMES):
        return target
    if not target:
        root.error(key, "an empty path")
        return None
    if "://" in target:
        root.error(
            key,
            f"{target!r}: expected a file path, stdout, stderr, file://, udp://, tcp:// or unix://",
        )
        return None
    return os.path.normpath(os.path.join(base_dir, target))


def _uids(root: Table) -> list[int] | None:
    value = root.data.get("command_allowed_uids")
    root.used.add("command_allowed_uids")
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(uid, int) and not isinstance(uid, bool) and 0 <= uid <= U32 for uid in value
    ):
        root.error("command_allowed_uids", "expected an array of user ids")
        return None
    if not value:  # as sozu: an empty allowlist allows nobody
        root.warn(
            "command_allowed_uids",
            "command_allowed_uids is empty: every command is refused, root's included "
            "(main still stops on SIGTERM)",
        )
    return list(value)


def _metrics(root: Table) -> ServerMetricsConfig | None:
    table = root.table("metrics")
    if table is None:
        return None
    address = table.address("address", required=True)
    detail_name = table.text("detail", "cluster")
    detail = _DETAIL.get(detail_name.upper())
    if detail is None:
        table.error("detail", f"{detail_name!r}: expected process, frontend, cluster or backend")
    if table.has("disable_cluster_metrics"):
        table.used.add("disable_cluster_metrics")
        table.warn("disable_cluster_metrics", "belongs at the top level, not in [metrics]")
    metrics = ServerMetricsConfig(
        address=str(address),
        tagged_metrics=table.flag("tagged_metrics", False),
        prefix=table.text("prefix", "sozu"),
        detail=detail,
    )
    table.finish(strict=True)
    return metrics if address is not None else None


def _prometheus(root: Table) -> str | None:
    table = root.table("prometheus")
    if table is None:
        return None
    address = table.address("address", required=True)
    table.finish(strict=True)
    return str(address) if address is not None else None


def _check_whole(config: Config, root: Table) -> None:
    h2 = [
        listener
        for listener in config.listeners
        if isinstance(listener, HttpsListenerConfig) and "h2" in listener.alpn_protocols
    ]
    if h2 and config.buffer_size < H2_MIN_BUFFER_SIZE:
        root.error(
            "buffer_size",
            f"{config.buffer_size} is below {H2_MIN_BUFFER_SIZE}, the minimum for HTTP/2 "
            f"(advertised by {len(h2)} HTTPS listener(s))",
        )


def _replay(config: Config, report: Report) -> None:
    """Apply the requests to an empty state: what the proxy would refuse, the load refuses."""
    state = ConfigState()
    for request, origin in config.located_requests():
        try:
            state.dispatch(request)
        except StateError as error:
            report.error(origin, None, str(error))
