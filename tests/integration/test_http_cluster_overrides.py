"""A cluster's own connect_timeout, back_timeout and sticky_name (pysozu extension) replace its
listener's for the requests routed to it, and only for those: real workers, real sockets."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from http_support import Backend, Client, Seen, WorkerProcess, get, running_worker

from dataplane.command.messages import Cluster, Request, StickyCookie
from dataplane.command.responses import ResponseStatus

pytestmark = pytest.mark.timeout(60)


def silent(seen: Seen, conn: socket.socket) -> bytes:
    time.sleep(8)  # longer than the test looks: the backend never answers in time
    return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def echo_head(seen: Seen, conn: socket.socket) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.head), seen.head)


def header(head: bytes, name: str) -> list[str]:
    return Seen(head, b"").header(name)


def upsert(worker: WorkerProcess, **cluster: Any) -> None:
    answer = worker.call(Request.of(add_cluster=Cluster(**cluster)))
    assert answer.status == ResponseStatus.OK, answer


def waiting(client: Client, seconds: float) -> bool:
    """True when nothing at all arrives on the connection for `seconds`."""
    client.sock.settimeout(seconds)
    try:
        return not client.sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: further SYNs are dropped and connects hang."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    port = stuck.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        stuck.close()


def test_back_timeout_of_a_cluster_replaces_the_listeners() -> None:
    backend = Backend(silent)
    clusters = {"fast": ("fast.example", [backend.port]), "slow": ("slow.example", [backend.port])}
    with running_worker(clusters, back_timeout=30) as (worker, port):
        upsert(worker, cluster_id="fast", back_timeout=1)  # an update of a running cluster
        slow = Client(port, timeout=10)
        slow.send(get("slow.example"))
        fast = Client(port, timeout=10)
        started = time.monotonic()
        fast.send(get("fast.example"))
        assert fast.response()[0] == 504
        assert 0.9 < time.monotonic() - started < 3.0
        assert waiting(slow, 1.5)  # the listener's 30 s still hold for the other cluster
        upsert(worker, cluster_id="fast")  # the override removed: the listener's again
        again = Client(port, timeout=10)
        again.send(get("fast.example"))
        assert waiting(again, 2.5)
    backend.close()


def test_connect_timeout_of_a_cluster_bounds_a_hanging_connect() -> None:
    with full_backlog() as stuck_port:
        clusters = {"fast": ("fast.example", [stuck_port]), "slow": ("slow.example", [stuck_port])}
        with running_worker(clusters, connect_timeout=30) as (worker, port):
            upsert(worker, cluster_id="fast", connect_timeout=1)
            slow = Client(port, timeout=10)
            slow.send(get("slow.example"))
            fast = Client(port, timeout=10)
            started = time.monotonic()
            fast.send(get("fast.example"))
            assert fast.response()[0] == 503  # its only backend never connected
            assert 0.9 < time.monotonic() - started < 3.0
            assert waiting(slow, 1.5)  # still connecting under the listener's 30 s


def test_sticky_name_of_a_cluster_names_its_cookie_both_ways() -> None:
    one, two, other = Backend(echo_head), Backend(echo_head), Backend(echo_head)
    with running_worker(
        {"a": ("a.example", [one.port, two.port]), "b": ("b.example", [other.port])},
        cluster_options={"sticky_session": True},
    ) as (worker, port):
        upsert(worker, cluster_id="a", sticky_session=True, sticky_name="APPID")
        _, head, _ = Client(port).roundtrip(get("a.example"))
        cookie = header(head, "Set-Cookie")
        assert len(cookie) == 1 and cookie[0].startswith("APPID=sticky-")
        sticky = cookie[0].split(";")[0]
        chosen = one if sticky.endswith("-0") else two
        for _ in range(4):  # new connections, same backend, no new cookie
            before = len(chosen.seen)
            extra = f"Cookie: a=1; {sticky}; SOZUBALANCEID=sticky-9\r\n"
            _, head, forwarded = Client(port).roundtrip(get("a.example", extra=extra))
            assert header(head, "Set-Cookie") == []
            assert len(chosen.seen) == before + 1
            # Its own cookie is consumed; the listener's name means nothing to this cluster.
            assert header(forwarded, "Cookie") == ["a=1; SOZUBALANCEID=sticky-9"]
        _, head, _ = Client(port).roundtrip(get("b.example"))  # the listener's name elsewhere
        assert header(head, "Set-Cookie")[0].startswith("SOZUBALANCEID=sticky-")


def test_sticky_cookie_attributes_reach_the_client() -> None:
    one, two = Backend(echo_head), Backend(echo_head)
    with running_worker(
        {"a": ("a.example", [one.port, two.port])}, cluster_options={"sticky_session": True}
    ) as (worker, port):
        cookie = StickyCookie(
            path="/app", max_age=60, expires=60, same_site="Lax", http_only=True, secure="https"
        )
        upsert(worker, cluster_id="a", sticky_session=True, sticky_cookie=cookie)
        _, head, _ = Client(port).roundtrip(get("a.example"))
        (value,) = header(head, "Set-Cookie")
        name, *attributes = value.split("; ")
        assert name.startswith("SOZUBALANCEID=sticky-")
        assert attributes[:4] == ["Path=/app", "Max-Age=60", "SameSite=Lax", "HttpOnly"]
        assert attributes[4].startswith("Expires=") and attributes[4].endswith(" GMT")
        assert len(attributes) == 5  # no Secure: this request came over plain HTTP
        # The client that sends it back stays put and gets no new cookie.
        _, head, _ = Client(port).roundtrip(get("a.example", extra=f"Cookie: {name}\r\n"))
        assert header(head, "Set-Cookie") == []


CONFIG = """
[[listeners]]
protocol = "http"
address = "127.0.0.1:{port}"
back_timeout = 30

[clusters.fast]
protocol = "http"
back_timeout = 1
frontends = [{{ address = "127.0.0.1:{port}", hostname = "fast.example" }}]
backends = [{{ address = "127.0.0.1:{backend}" }}]

[clusters.slow]
protocol = "http"
frontends = [{{ address = "127.0.0.1:{port}", hostname = "slow.example" }}]
backends = [{{ address = "127.0.0.1:{backend}" }}]
"""


def timed_get(port: int, host: str) -> tuple[int, float]:
    client = Client(port, timeout=10)
    started = time.monotonic()
    client.send(get(host))
    status = client.response()[0]
    client.close()
    return status, time.monotonic() - started


def test_toml_and_cli_overrides_through_main(pysozu: Any) -> None:
    backend = Backend(silent)
    port = pysozu.free_port()
    proxy = pysozu.start(CONFIG.format(port=port, backend=backend.port), workers=1)
    assert timed_get(port, "fast.example")[0] == 504
    slow = Client(port, timeout=10)
    slow.send(get("slow.example"))
    assert waiting(slow, 1.5)
    done = proxy.cli("cluster", "add", "-i", "slow", "--back-timeout", "1")
    assert done.returncode == 0, done.stderr
    status, took = timed_get(port, "slow.example")
    assert status == 504 and took < 3.0
    refused = proxy.cli("cluster", "add", "-i", "slow", "--sticky-name", "a b")
    assert refused.returncode != 0
    assert "sticky_name 'a b' is not a valid HTTP token" in refused.stdout + refused.stderr
    backend.close()
