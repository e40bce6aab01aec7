"""Audit records in sozu 2.1's shape (dataplane.main.audit_record)."""

from __future__ import annotations

import json

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    AddBackend,
    Cluster,
    ListenerType,
    Request,
    RequestHttpFrontend,
)
from dataplane.main.audit import error_code
from dataplane.main.audit_record import Record, entry_for, render_json, render_text, ulid
from dataplane.main.peer import Peer

ADDRESS = SocketAddress.parse("127.0.0.1:8080")
PEER = Peer(uid=1000, gid=1000, pid=42, user="ops", comm="pysozu", connected_at=0.0)


def test_targets_name_what_the_request_is_about_as_sozu() -> None:
    cluster = entry_for(Request.of(add_cluster=Cluster(cluster_id="app")))
    assert (cluster.verb, cluster.target, cluster.cluster_id) == (
        "cluster_added",
        "cluster:app",
        "app",
    )
    front = entry_for(
        Request.of(
            add_http_frontend=RequestHttpFrontend(
                cluster_id="app", address=ADDRESS, hostname="example.com"
            )
        )
    )
    assert front.target == "frontend:http:example.com:127.0.0.1:8080"
    listener = entry_for(
        Request.of(activate_listener=ActivateListener(address=ADDRESS, proxy=ListenerType.HTTPS))
    )
    assert (listener.verb, listener.target) == (
        "listener_activated",
        "listener:Https:127.0.0.1:8080",
    )
    backend = entry_for(
        Request.of(add_backend=AddBackend(cluster_id="app", backend_id="b1", address=ADDRESS))
    )
    assert backend.backend_id == "b1" and backend.target == "backend:app:b1:127.0.0.1:8080"
    assert entry_for(Request.of(logging="debug")).target == "logging:debug"


def record(**changes: object) -> Record:
    entry = entry_for(Request.of(add_cluster=Cluster(cluster_id="app")))
    fields: dict[str, object] = {
        "entry": entry,
        "peer": PEER,
        "result": "ok",
        "client_id": 7,
        "session": ulid(0.0),
        "socket": "/run/sozu.sock",
        "version": "1.0",
        "time": 0.0,
    }
    fields.update(changes)
    return Record(**fields)  # type: ignore[arg-type]


def test_text_line_layout() -> None:
    line = render_text(record(result="err", error_code="dispatch_error", reason="no"))
    context, keyword, body = line.split("\t")
    assert context.endswith(" app -]") and keyword == "AUDIT"
    assert body.startswith("Command(ts=1970-01-01T00:00:00.000000Z, verb=cluster_added, ")
    assert "actor_uid=1000, actor_gid=1000, actor_pid=42, actor_role=user, actor_user=ops, " in body
    assert "target=cluster:app, result=err, error_code=dispatch_error, reason=no, " in body
    assert body.endswith("sozu_version=1.0, build_git_sha=unknown, boot_generation=0)")


def test_control_characters_cannot_forge_a_line_or_a_column() -> None:
    entry = entry_for(Request.of(add_cluster=Cluster(cluster_id="x\n[fake]\tAUDIT")))
    line = render_text(record(entry=entry))
    assert "\n" not in line and line.count("\t") == 2
    assert "x?[fake]?AUDIT" in line
    assert "\n" not in render_json(record(entry=entry))


def test_json_record_has_every_key_null_when_unknown() -> None:
    document = json.loads(render_json(record(peer=Peer(connected_at=0.0))))
    assert document["actor"] == {
        "uid": None,
        "gid": None,
        "pid": None,
        "user": None,
        "comm": None,
        "role": "unknown",
    }
    assert document["verb"] == "cluster_added" and document["backend_id"] is None
    assert document["extras"] == {}


def test_ulid_shape() -> None:
    value = ulid(1.0)
    assert len(value) == 26 and value.startswith("00000000Z8")  # 1000 ms
    assert ulid() != ulid()


def test_error_codes() -> None:
    assert error_code("could not dispatch request on the main process state: x") == (
        "dispatch_error"
    )
    assert error_code("worker 1: no answer within 10 s") == "worker_timeout"
    assert error_code("worker 0: refused") == "worker_failure"
    assert error_code("add_tcp_listener: TCP proxying is not supported yet") == "invalid_input"
