"""One audit record: who (uid, gid, pid, command) asked main for what, and how it ended.

The shape is sozu 2.1's (doc/observability.md, "Control-plane audit trail"), so that a SIEM
parser written for sozu reads pysozu's records unchanged:

- text: `[<session> <request> <cluster|-> <backend|->]\\tAUDIT\\tCommand(ts=..., verb=...,
  actor_uid=..., actor_gid=..., actor_pid=..., actor_role=..., actor_user=..., actor_comm=...,
  client_id=..., connect_ts=..., socket=..., target=..., result=ok|err[, error_code=...,
  reason=..., elapsed_ms=..., request_sha256=...], sozu_version=..., build_git_sha=...,
  boot_generation=...)`;
- JSON: one object per line, every key always present (null when unknown), the optional
  fields under `extras`.

`verb` is sozu's past-tense name (`cluster_added`); `sozu_version` holds pysozu's version.
Free-form fields have their control characters replaced by `?`, so no value can forge a
second line or column. `request_sha256` is the first 16 hex digits of the SHA-256 of the
request as it arrived (its JSON; sozu hashes its protobuf encoding).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dataplane.command.codec import encode
from dataplane.command.messages import Request
from dataplane.main.peer import Peer

REASON_MAX_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Request verb -> audit verb. sozu's names where sozu audits the verb; the others change state
# too and get names in the same style (pysozu audits them; sozu does not).
AUDIT_VERBS = {
    "add_cluster": "cluster_added",
    "remove_cluster": "cluster_removed",
    "add_http_frontend": "http_frontend_added",
    "add_https_frontend": "https_frontend_added",
    "add_tcp_frontend": "tcp_frontend_added",
    "add_udp_frontend": "udp_frontend_added",
    "remove_http_frontend": "http_frontend_removed",
    "remove_https_frontend": "https_frontend_removed",
    "remove_tcp_frontend": "tcp_frontend_removed",
    "remove_udp_frontend": "udp_frontend_removed",
    "add_certificate": "certificate_added",
    "remove_certificate": "certificate_removed",
    "replace_certificate": "certificate_replaced",
    "activate_listener": "listener_activated",
    "deactivate_listener": "listener_deactivated",
    "add_http_listener": "http_listener_added",
    "add_https_listener": "https_listener_added",
    "add_tcp_listener": "tcp_listener_added",
    "add_udp_listener": "udp_listener_added",
    "update_http_listener": "http_listener_updated",
    "update_https_listener": "https_listener_updated",
    "update_tcp_listener": "tcp_listener_updated",
    "update_udp_listener": "udp_listener_updated",
    "remove_listener": "listener_removed",
    "save_state": "state_saved",
    "load_state": "state_loaded",
    "reload_configuration": "configuration_reloaded",
    "logging": "logging_level_changed",
    "subscribe_events": "events_subscribed",
    "soft_stop": "sozu_stop_requested",
    "hard_stop": "sozu_stop_requested",
    "configure_metrics": "metrics_configured",
    "set_metric_detail": "metric_detail_changed",
    # pysozu's additions
    "add_backend": "backend_added",
    "remove_backend": "backend_removed",
    "set_health_check": "health_check_set",
    "remove_health_check": "health_check_removed",
    "set_max_connections_per_ip": "max_connections_per_ip_set",
    "upgrade_main": "main_upgraded",
    "upgrade_worker": "worker_upgraded",
}


@dataclass
class Entry:
    """What a request is about: sozu's verb name, its target, the cluster/backend it names."""

    verb: str
    target: str
    cluster_id: str | None = None
    backend_id: str | None = None


def entry_for(request: Request) -> Entry:
    verb = request.verb
    body: Any = request.body
    name = AUDIT_VERBS.get(verb, verb)
    kind = verb.split("_")[1] if verb.count("_") >= 2 else ""
    if verb in ("add_cluster", "remove_cluster", "set_health_check", "remove_health_check"):
        cluster = body.cluster_id if hasattr(body, "cluster_id") else str(body)
        prefix = "cluster" if "cluster" in verb else "health_check"
        return Entry(name, f"{prefix}:{cluster}", cluster_id=cluster)
    if verb.endswith("_frontend"):
        named = body.hostname if kind in ("http", "https") else body.cluster_id
        return Entry(name, f"frontend:{kind}:{named}:{body.address}", cluster_id=body.cluster_id)
    if verb.endswith("_backend"):
        target = f"backend:{body.cluster_id}:{body.backend_id}:{body.address}"
        return Entry(name, target, cluster_id=body.cluster_id, backend_id=body.backend_id)
    if verb in ("add_certificate",):
        return Entry(name, f"certificate:{body.address}")
    if verb == "remove_certificate":
        return Entry(name, f"certificate:{body.address}:{body.fingerprint}")
    if verb == "replace_certificate":
        return Entry(name, f"certificate:{body.address}:old={body.old_fingerprint}")
    if verb in ("activate_listener", "deactivate_listener", "remove_listener"):
        return Entry(name, f"listener:{body.proxy.name.capitalize()}:{body.address}")
    if verb.endswith("_listener"):
        return Entry(name, f"listener:{kind}:{body.address}")
    simple: dict[str, Callable[[], str]] = {
        "save_state": lambda: f"file:{body}",
        "load_state": lambda: f"file:{body}",
        "reload_configuration": lambda: f"config:{body or '(the file main was started with)'}",
        "logging": lambda: f"logging:{body}",
        "soft_stop": lambda: "stop:soft",
        "hard_stop": lambda: "stop:hard",
        "configure_metrics": lambda: f"metrics:{getattr(body, 'name', body)}",
        "set_max_connections_per_ip": lambda: f"max_connections_per_ip:{body}",
        "upgrade_main": lambda: "upgrade:main",
        "upgrade_worker": lambda: f"upgrade:worker:{body}",
    }
    return Entry(name, simple[verb]() if verb in simple else verb)


@dataclass
class Record:
    """One audit record (the module docstring says how it renders)."""

    entry: Entry
    peer: Peer
    result: str  # "ok" or "err"
    client_id: int | None = None
    session: str = "-"
    socket: str = ""
    error_code: str | None = None
    reason: str | None = None
    elapsed_ms: int | None = None
    request_sha256: str | None = None
    version: str = ""
    boot_generation: int = 0
    time: float = field(default_factory=time.time)
    request_id: str = ""

    def __post_init__(self) -> None:
        if not self.request_id:
            self.request_id = ulid(self.time)


def request_digest(request: Request) -> str:
    return hashlib.sha256(encode(request)).hexdigest()[:16]


def sanitize(text: str) -> str:
    return _CONTROL.sub("?", text)


def actor_role(uid: int | None) -> str:
    if uid is None:
        return "unknown"
    if uid == 0:
        return "root"
    return "system" if uid < 1000 else "user"


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ulid(when: float | None = None) -> str:
    """A ULID (48-bit milliseconds, 80 random bits, Crockford base32), as sozu's ids."""
    millis = int((time.time() if when is None else when) * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _reason(record: Record) -> str | None:
    if record.reason is None:
        return None
    reason = sanitize(record.reason)
    return reason if len(reason) <= REASON_MAX_CHARS else reason[:REASON_MAX_CHARS] + "…"


def _shown(value: object) -> str:
    return "unknown" if value is None else sanitize(str(value))


def render_text(record: Record) -> str:
    entry, peer = record.entry, record.peer
    fields = [
        ("ts", rfc3339(record.time)),
        ("verb", entry.verb),
        ("actor_uid", _shown(peer.uid)),
        ("actor_gid", _shown(peer.gid)),
        ("actor_pid", _shown(peer.pid)),
        ("actor_role", actor_role(peer.uid)),
        ("actor_user", _shown(peer.user)),
        ("actor_comm", _shown(peer.comm)),
        ("client_id", _shown(record.client_id)),
        ("connect_ts", rfc3339(peer.connected_at)),
        ("socket", sanitize(record.socket)),
        ("target", sanitize(entry.target)),
        ("result", record.result),
    ]
    optional = [
        ("error_code", record.error_code),
        ("reason", _reason(record)),
        ("elapsed_ms", record.elapsed_ms),
        ("request_sha256", record.request_sha256),
    ]
    fields += [(key, str(value)) for key, value in optional if value is not None]
    fields += [
        ("sozu_version", record.version),
        ("build_git_sha", "unknown"),
        ("boot_generation", str(record.boot_generation)),
    ]
    cluster = sanitize(entry.cluster_id) if entry.cluster_id is not None else "-"
    backend = sanitize(entry.backend_id) if entry.backend_id is not None else "-"
    context = f"[{record.session} {record.request_id} {cluster} {backend}]"
    body = ", ".join(f"{key}={value}" for key, value in fields)
    return f"{context}\tAUDIT\tCommand({body})"


def render_json(record: Record) -> str:
    entry, peer = record.entry, record.peer
    extras: dict[str, object] = {}
    if record.error_code is not None:
        extras["error_code"] = record.error_code
    if record.reason is not None:
        extras["reason"] = _reason(record)
    if record.elapsed_ms is not None:
        extras["elapsed_ms"] = record.elapsed_ms
    if record.request_sha256 is not None:
        extras["request_sha256"] = record.request_sha256
    document = {
        "ts": rfc3339(record.time),
        "boot_generation": record.boot_generation,
        "session_ulid": record.session,
        "request_ulid": record.request_id,
        "actor": {
            "uid": peer.uid,
            "gid": peer.gid,
            "pid": peer.pid,
            "user": None if peer.user is None else sanitize(peer.user),
            "comm": None if peer.comm is None else sanitize(peer.comm),
            "role": actor_role(peer.uid),
        },
        "client_id": record.client_id,
        "connect_ts": rfc3339(peer.connected_at),
        "socket": sanitize(record.socket),
        "verb": entry.verb,
        "target": sanitize(entry.target),
        "result": record.result,
        "cluster_id": None if entry.cluster_id is None else sanitize(entry.cluster_id),
        "backend_id": None if entry.backend_id is None else sanitize(entry.backend_id),
        "sozu_version": record.version,
        "build_git_sha": None,
        "extras": extras,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
