"""Printing main's answers: tables for people, the final Response as JSON with `-j`.

With `-j`, stdout holds one JSON object per answer in the wire's shape with enum values by name,
and errors of the CLI itself are JSON too (`print_json_failure`); people's messages go to
stderr either way.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

from dataplane.cli.backend_health import BACKEND_HEADERS, backend_rows
from dataplane.cli.metrics_text import show_aggregated
from dataplane.command import codec
from dataplane.command.responses import Response, ResponseContent, RunState
from dataplane.command.state_rules import certificate_names


def named(value: Any) -> Any:
    """A message as plain JSON values in the wire's shape, except that enum values are
    given by name (`"RUNNING"`, `"FAILURE"`, `"ROUND_ROBIN"`), not by number."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, msgspec.Struct):
        omit_defaults = value.__struct_config__.omit_defaults
        fields = {}
        for info in msgspec.structs.fields(value):
            item = getattr(value, info.name)
            if omit_defaults and _is_default(info, item):
                continue
            fields[info.encode_name] = named(item)
        return fields
    if isinstance(value, dict):
        return {named(key): named(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [named(item) for item in value]
    return codec.to_builtins(value)  # scalars, socket addresses, bytes


def _is_default(info: msgspec.structs.FieldInfo, item: Any) -> bool:
    if info.default is not msgspec.NODEFAULT:
        return bool(item == info.default)
    if info.default_factory is not msgspec.NODEFAULT:
        return bool(item == info.default_factory())
    return False


def print_json(response: Response, out: TextIO | None = None) -> None:
    """The final answer (or an event) as one JSON line, enums by name."""
    out = sys.stdout if out is None else out
    out.write(json.dumps(named(response), sort_keys=True) + "\n")
    out.flush()


def print_json_failure(message: str, out: TextIO | None = None) -> None:
    """With `--json`, an error of the CLI itself (usage, config, main unreachable) in the same
    shape as main's FAILURE, so that a script reads `status` and `message` in every case."""
    print_json(Response.failure(message), out)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO = sys.stdout) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        out.write("\n")


def uptime(started_at: float | None, now: float | None = None) -> str:
    if started_at is None:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - started_at))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _content(response: Response, kind: str) -> Any:
    content = response.content
    if content is None or content.kind != kind:
        return None
    return content.value


def show_workers(response: Response, out: TextIO) -> None:
    infos = _content(response, "workers")
    rows = [
        (
            i.id,
            i.pid,
            RunState(i.run_state).name,
            i.version or "-",
            uptime(i.started_at),
            "-" if i.connections is None else i.connections,
            "-" if i.unhealthy_backends is None else i.unhealthy_backends,
        )
        for i in (infos.vec if infos else [])
    ]
    if response.message:  # main describes itself (pid, version, restarts)
        print(response.message, file=out)
    headers = ("WORKER", "PID", "STATE", "VERSION", "UPTIME", "CONNECTIONS", "UNHEALTHY BACKENDS")
    table(headers, rows, out)


def show_listeners(response: Response, out: TextIO) -> None:
    listeners = _content(response, "listeners_list")
    rows = []
    if listeners is not None:
        for protocol in ("http", "https", "tcp", "udp"):
            for address, config in getattr(listeners, f"{protocol}_listeners").items():
                public = config.public_address
                trusted = getattr(config, "trusted_proxies", None)  # HTTP and HTTPS only
                rows.append(
                    (
                        protocol.upper(),
                        address,
                        "yes" if config.active else "no",
                        str(public) if public else "-",
                        ",".join(trusted) if trusted else "-",
                        _body_rate(config),
                    )
                )
    headers = (
        "PROTOCOL",
        "ADDRESS",
        "ACTIVE",
        "PUBLIC ADDRESS",
        "TRUSTED PROXIES",
        "BODY MIN RATE",
    )
    table(headers, rows, out)


def _body_rate(config: Any) -> str:
    """`500 B/s per 30 s`, `off`, or `-` where it does not apply (TCP, UDP)."""
    rate = getattr(config, "request_body_min_rate", None)
    if rate is None:
        return "-"
    window = config.request_body_timeout
    return f"{rate} B/s per {window} s" if rate and window else "off"


def _route(front: Any) -> tuple[str, str, str, str]:
    path = front.path
    rule = {0: "prefix", 1: "regex", 2: "equals"}[int(path.kind)]
    return (
        front.hostname,
        f"{rule} {path.value or '/'}" if path.value else "*",
        front.method or "*",
        front.cluster_id if front.cluster_id is not None else "(deny)",
    )


def show_frontends(response: Response, out: TextIO) -> None:
    fronts = _content(response, "frontend_list")
    rows: list[tuple[Any, ...]] = []
    if fronts is not None:
        for protocol in ("http", "https"):
            for front in getattr(fronts, f"{protocol}_frontends"):
                label = "HTTPS PASSTHROUGH" if front.passthrough else protocol.upper()
                rows.append((label, str(front.address), *_route(front)))
        for protocol in ("tcp", "udp"):
            for front in getattr(fronts, f"{protocol}_frontends"):
                rows.append((protocol.upper(), str(front.address), "-", "-", "-", front.cluster_id))
    table(("PROTOCOL", "ADDRESS", "HOSTNAME", "PATH", "METHOD", "CLUSTER"), rows, out)


def show_clusters(response: Response, out: TextIO) -> None:
    answers = _content(response, "worker_responses")
    if answers is None:
        show_message(response, out)
        return
    main = answers.map.get("main")
    workers = {k: v for k, v in answers.map.items() if k != "main"}
    if main is not None and main.kind == "cluster_hashes":
        rows = []
        for cluster_id, digest in sorted(main.value.map.items()):
            agree = sum(
                1
                for w in workers.values()
                if w.kind == "cluster_hashes" and w.value.map.get(cluster_id) == digest
            )
            rows.append((cluster_id, f"{digest:016x}", f"{agree}/{len(workers)}"))
        table(("CLUSTER", "HASH", "WORKERS IN SYNC"), rows, out)
    elif main is not None and main.kind == "clusters":
        _show_cluster_informations(main, workers, out)
    if response.message:
        out.write(response.message + "\n")


def _show_cluster_informations(
    content: ResponseContent, workers: dict[str, ResponseContent], out: TextIO
) -> None:
    infos = content.value.vec
    if not infos:
        out.write("no cluster found\n")
    for info in infos:
        config = info.configuration
        out.write(f"cluster {config.cluster_id if config else '?'}\n")
        fronts = [("HTTP", f) for f in info.http_frontends] + [
            ("HTTPS", f) for f in info.https_frontends
        ]
        table(
            ("PROTOCOL", "ADDRESS", "HOSTNAME", "PATH", "METHOD", "CLUSTER"),
            [(p, str(f.address), *_route(f)) for p, f in fronts],
            out,
        )
        table(BACKEND_HEADERS, backend_rows(info, workers), out)


def show_backends(response: Response, out: TextIO) -> None:
    """`backend list`: the backends of the clusters found, with their health."""
    answers = _content(response, "worker_responses")
    main = answers.map.get("main") if answers is not None else None
    if main is None or main.kind != "clusters":
        show_message(response, out)
        return
    workers = {k: v for k, v in answers.map.items() if k != "main"}
    rows = [
        (info.configuration.cluster_id if info.configuration else "?", *row)
        for info in main.value.vec
        for row in backend_rows(info, workers)
    ]
    table(("CLUSTER", *BACKEND_HEADERS), rows, out)
    if response.message:
        out.write(response.message + "\n")


def show_certificates(response: Response, out: TextIO) -> None:
    """Main's state: fingerprint, names, expiry. With `--workers`: what each worker serves."""
    certs = _content(response, "certificates_with_fingerprints")
    if certs is not None:
        rows = [(fp, *_certificate_facts(c.certificate, c.names)) for fp, c in certs.certs.items()]
        table(("FINGERPRINT", "NAMES", "EXPIRES"), sorted(rows), out)
        return
    answers = _content(response, "worker_responses")
    if answers is None:
        print_json(response, out)
        return
    served = [
        (worker, str(by_address.address), summary.domain, summary.fingerprint)
        for worker, content in sorted(answers.map.items())
        if content.kind == "certificates_by_address"
        for by_address in content.value.certificates
        for summary in by_address.certificate_summaries
    ]
    table(("WORKER", "ADDRESS", "NAME", "FINGERPRINT"), served, out)
    if response.message:
        out.write(response.message + "\n")


def _certificate_facts(pem: str, names: list[str]) -> tuple[str, str]:
    """(names, expiry) of a PEM certificate; names given explicitly win, as they are served."""
    from cryptography import x509  # 11+ MB: not in main, which imports this module

    try:
        leaf = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return ", ".join(names), "?"
    expiry = leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return ", ".join(names or certificate_names(pem)), expiry


def show_request_counts(response: Response, out: TextIO) -> None:
    counts = _content(response, "request_counts")
    rows = sorted((counts.map if counts else {}).items())
    table(("REQUEST", "COUNT"), rows, out)


def show_metrics(response: Response, out: TextIO) -> None:
    available = _content(response, "available_metrics")
    if available is not None:
        table(("PROXY METRICS",), [(name,) for name in available.proxy_metrics], out)
        table(("CLUSTER METRICS",), [(name,) for name in available.cluster_metrics], out)
        return
    metrics = _content(response, "metrics")
    if metrics is None:
        show_message(response, out)
        return
    show_aggregated(metrics, out)
    if response.message:  # "some workers did not answer: ..."
        out.write(f"\n{response.message}\n")


def show_message(response: Response, out: TextIO) -> None:
    out.write((response.message or "OK") + "\n")


def show_event(response: Response, out: TextIO) -> None:
    event = _content(response, "event")
    if event is None:
        return
    details = " ".join(
        f"{name}={value}"
        for name in ("cluster_id", "backend_id", "address")
        if (value := getattr(event, name)) is not None
    )
    out.write(f"{response.message} {event.kind.name} {details}".rstrip() + "\n")
    out.flush()


SHOW = {
    "message": show_message,
    "workers": show_workers,
    "listeners": show_listeners,
    "frontends": show_frontends,
    "clusters": show_clusters,
    "backends": show_backends,
    "certificates": show_certificates,
    "request_counts": show_request_counts,
    "metrics": show_metrics,
    "json": print_json,
}
