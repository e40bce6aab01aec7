"""The worker process: boot as main boots it, routing, keep-alive, commands, stops."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time

import pytest
from http_support import (
    Backend,
    Client,
    WorkerProcess,
    exchange,
    get,
    listening_socket,
    ok,
    routing_state,
    running_worker,
    worker_command,
)

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    AddBackend,
    Empty,
    HardStopOptions,
    HttpListenerConfig,
    ListenerType,
    QueryClusterByDomain,
    QueryMetricsOptions,
    Request,
    RequestHttpFrontend,
    ServerConfig,
    UpdateHttpListenerConfig,
    WorkerRequest,
)
from dataplane.command.responses import ResponseStatus
from dataplane.command.scm import Listeners, receive_listeners, send_listeners

pytestmark = pytest.mark.timeout(60)


def test_routes_by_host_and_keeps_both_sides_alive() -> None:
    one, two = Backend(ok(b"one")), Backend(ok(b"two"))
    with running_worker({"a": ("a.example", [one.port]), "b": ("b.example", [two.port])}) as (
        _worker,
        port,
    ):
        client = Client(port)
        for _ in range(5):
            client.send(get("a.example"))
            assert client.response()[::2] == (200, b"one")
            client.send(get("B.Example:80"))
            assert client.response()[::2] == (200, b"two")
        assert one.connections == 1  # the backend connection was kept and reused
        client.send(get("nobody.example"))
        status, head, _ = client.response()
        assert status == 404
        assert b"Sozu-Id:" in head
    one.close()
    two.close()


def test_round_robin_over_backends_of_a_cluster() -> None:
    one, two = Backend(ok(b"one")), Backend(ok(b"two"))
    with running_worker({"a": ("a.example", [one.port, two.port])}) as (_worker, port):
        bodies = {Client(port).roundtrip(get("a.example"))[2] for _ in range(6)}
    assert bodies == {b"one", b"two"}


def test_503_without_backends_and_after_three_failed_connects() -> None:
    dead = [listening_socket() for _ in range(5)]
    ports = [port for _, port in dead]
    for sock, _ in dead:
        sock.close()  # nothing listens there any more: connects are refused
    with running_worker({"none": ("none.example", []), "dead": ("dead.example", ports)}) as (
        _worker,
        port,
    ):
        assert Client(port).roundtrip(get("none.example"))[0] == 503
        assert Client(port).roundtrip(get("dead.example"))[0] == 503


def test_state_requests_change_routing_live() -> None:
    backend = Backend(ok(b"late"))
    with running_worker({"a": ("a.example", [])}) as (worker, port):
        assert Client(port).roundtrip(get("a.example"))[0] == 503
        address = SocketAddress.parse(f"127.0.0.1:{backend.port}")
        answer = worker.call(
            Request.of(add_backend=AddBackend(cluster_id="a", backend_id="x", address=address))
        )
        assert answer.status == ResponseStatus.OK
        assert Client(port).roundtrip(get("a.example"))[::2] == (200, b"late")
        front = RequestHttpFrontend(
            cluster_id="a", address=SocketAddress.parse(f"127.0.0.1:{port}"), hostname="new.io"
        )
        assert worker.call(Request.of(add_http_frontend=front)).status == ResponseStatus.OK
        assert Client(port).roundtrip(get("new.io"))[0] == 200
        again = worker.call(Request.of(add_http_frontend=front))
        assert again.status == ResponseStatus.FAILURE and again.message
        missing = RequestHttpFrontend(cluster_id="nope", address=front.address, hostname="other.io")
        worker.call(Request.of(add_http_frontend=missing))  # accepted or not: never forwarded
        assert Client(port).roundtrip(get("other.io"))[0] in (404, 503)


def test_queries_are_answered_from_the_worker_state() -> None:
    with running_worker({"a": ("a.example", [9])}) as (worker, _port):
        hashes = worker.call(Request.of(query_clusters_hashes=Empty()))
        assert set(hashes.content.value.map) == {"a"}  # type: ignore[union-attr]
        by_id = worker.call(Request.of(query_cluster_by_id="a"))
        assert by_id.content.value.vec[0].configuration.cluster_id == "a"  # type: ignore[union-attr]
        by_domain = worker.call(
            Request.of(query_clusters_by_domain=QueryClusterByDomain(hostname="a.example"))
        )
        assert len(by_domain.content.value.vec) == 1  # type: ignore[union-attr]
        counts = worker.call(Request.of(count_requests=Empty()))
        assert counts.content.value.map["query_clusters_hashes"] == 1  # type: ignore[union-attr]


def test_metrics_count_requests_statuses_and_connections() -> None:
    backend = Backend(ok(b"hi"))
    with running_worker({"a": ("a.example", [backend.port])}) as (worker, port):
        client = Client(port)
        for _ in range(3):
            assert client.roundtrip(get("a.example"))[0] == 200
        assert client.roundtrip(get("nowhere.example"))[0] == 404
        answer = worker.call(Request.of(query_metrics=QueryMetricsOptions()))
        assert answer.status == ResponseStatus.OK
        metrics = answer.content.value  # type: ignore[union-attr]
        proxy = metrics.proxy
        assert proxy["http.requests"].inner.count == 4
        assert proxy["http.status.2xx"].inner.count == 3
        assert proxy["http.status.4xx"].inner.count == 1
        assert proxy["http.answers:404"].inner.count == 1
        assert proxy["client.connections"].inner.gauge == 1
        assert metrics.clusters["a"].cluster["http.requests"].inner.count == 3
        assert proxy["request_time"].inner.histogram.count == 4


def test_soft_stop_finishes_in_flight_requests_then_exits() -> None:
    def slow(seen, conn):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"

    backend = Backend(slow)
    with running_worker({"a": ("a.example", [backend.port])}) as (worker, port):
        idle = Client(port)
        busy = Client(port)
        busy.send(get("a.example"))
        time.sleep(0.2)
        soft_stop = Request.of(soft_stop=HardStopOptions())
        worker.channel.send(WorkerRequest(id="soft", content=soft_stop))  # answered when drained
        status, head, body = busy.response()
        assert (status, body) == (200, b"slow")
        assert b"Connection: close" in head
        assert idle.closed()
        answer = worker.channel.receive_one(timeout=5)
        assert answer.id == "soft" and answer.status == ResponseStatus.OK  # type: ignore[union-attr]
        assert worker.process.wait(timeout=5) == 0


def test_binds_itself_when_main_sends_no_socket() -> None:
    sock, port = listening_socket()
    sock.close()
    worker = WorkerProcess(routing_state(port, {"a": ("a.example", [])}))
    try:
        worker.call(Request.of(status=Empty()))  # the loop runs: the listener is bound
        assert Client(port).roundtrip(get("a.example"))[0] == 503
    finally:
        worker.stop()


def test_activate_listener_from_scm_at_runtime() -> None:
    worker = WorkerProcess([])
    try:
        sock, port = listening_socket()
        address = SocketAddress.parse(f"127.0.0.1:{port}")
        added = worker.call(Request.of(add_http_listener=HttpListenerConfig(address=address)))
        assert added.status == ResponseStatus.OK
        send_listeners(worker.scm, Listeners(http={str(address): sock}))
        sock.close()
        activate = ActivateListener(address=address, proxy=ListenerType.HTTP, from_scm=True)
        assert worker.call(Request.of(activate_listener=activate)).status == ResponseStatus.OK
        assert Client(port).roundtrip(get("x.example"))[0] == 404
    finally:
        worker.stop()


def test_rejects_bad_descriptors_with_one_line() -> None:
    with tempfile.TemporaryFile() as state:
        result = subprocess.run(
            worker_command(97, 98, state.fileno()),
            pass_fds=[state.fileno()],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert "not an open file descriptor" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_hard_stop_exits_now_and_drops_connections() -> None:
    with running_worker({"a": ("a.example", [])}) as (worker, port):
        client = Client(port)
        answer = worker.call(Request.of(hard_stop={}))  # type: ignore[arg-type]
        assert answer.status == ResponseStatus.OK
        assert worker.process.wait(timeout=5) == 0
        assert client.closed()


def test_max_connections_stops_accepting_then_resumes() -> None:
    with running_worker({"a": ("a.example", [])}, ServerConfig(max_connections=2)) as (_w, port):
        held = [Client(port) for _ in range(2)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=1)
        extra.sendall(get("a.example"))
        extra.settimeout(0.5)
        with pytest.raises(TimeoutError):
            extra.recv(1)  # queued in the backlog, not served
        for client in held:
            client.close()
        extra.settimeout(5)
        assert extra.recv(12).startswith(b"HTTP/1.1 503")
        extra.close()


def test_garbage_then_valid_client_does_not_hurt_the_worker() -> None:
    with running_worker({"a": ("a.example", [])}) as (worker, port):
        for junk in (os.urandom(5000), b"\x00" * 100, b"GET / HTTP/1.1\r\n" * 2000):
            exchange(port, junk, timeout=2)
        assert Client(port).roundtrip(get("a.example"))[0] == 503
        assert worker.process.poll() is None


def test_update_http_listener_applies_live() -> None:
    backend = Backend(ok(b"x"))
    with running_worker({"a": ("a.example", [backend.port])}) as (worker, port):
        patch = UpdateHttpListenerConfig(
            address=SocketAddress.parse(f"127.0.0.1:{port}"), sozu_id_header="X-Trace"
        )
        answer = worker.call(Request.of(update_http_listener=patch))
        assert answer.status == ResponseStatus.OK, answer.message
        _, head, _ = Client(port).roundtrip(get("a.example"))
        assert b"X-Trace: " in head and b"Sozu-Id" not in head


def test_return_listen_sockets_hands_the_listener_back() -> None:
    with running_worker({"a": ("a.example", [])}) as (worker, port):
        answer = worker.call(Request.of(return_listen_sockets=Empty()))
        assert answer.status == ResponseStatus.OK
        returned = receive_listeners(worker.scm)
        sock = returned.http.pop(f"127.0.0.1:{port}")
        assert sock.getsockname()[1] == port
        pending = socket.create_connection(("127.0.0.1", port), timeout=2)
        conn, _ = sock.accept()  # the queue is ours now: the worker stopped accepting
        conn.close()
        pending.close()
        sock.close()
