"""Backends that are black-holed, not refused: a real pysozu in the root namespace and a backend
address in a network namespace whose replies are dropped (tests/integration/netns_support.py),
so a connect hangs until pysozu's own timeout, as with a dead host behind a firewall.

- HTTP: `connect_timeout` ends the hanging connect; the request goes to the next backend, or
  gets 503 when there is none.
- TCP listener: the same for a raw TCP connection (the next backend, or the client is closed).
- Active health check: the probe's timeout takes the black-holed backend out of rotation, and
  it comes back once its replies flow again.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from netns_support import Namespace, backend_namespace

from dataplane.command.responses import EventKind

pytestmark = pytest.mark.timeout(120)

CONNECT_TIMEOUT = 1  # seconds, the listeners' connect_timeout below
BLACKHOLED_PORT = 8080  # nothing needs to listen there: no reply ever comes back
# Worker timeouts live on a wheel of one-second slots: one fires up to a second late.
LATEST = CONNECT_TIMEOUT + 2.5


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    with backend_namespace() as created:
        yield created


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def http_toml(port: int, backends: list[str], extra: str = "") -> str:
    entries = ", ".join(
        f'{{ address = "{address}", backend_id = "b{n}" }}' for n, address in enumerate(backends)
    )
    return (
        f'worker_count = 1\n[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n'
        f"connect_timeout = {CONNECT_TIMEOUT}\n"
        f'[clusters.app]\nprotocol = "http"\nload_balancing = "ROUND_ROBIN"\n'
        f'frontends = [{{ address = "127.0.0.1:{port}", hostname = "app.com" }}]\n'
        f"backends = [{entries}]\n{extra}"
    )


def test_the_black_hole_is_real(namespace: Namespace) -> None:
    """Before the black hole a closed port refuses at once; after it, a connect hangs."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((namespace.address, BLACKHOLED_PORT), timeout=5).close()
    namespace.blackhole()
    with pytest.raises(TimeoutError):
        socket.create_connection((namespace.address, BLACKHOLED_PORT), timeout=1).close()


def test_http_connect_timeout_gives_503_then_the_next_backend_answers(
    pysozu: Any, backends: Any, namespace: Namespace
) -> None:
    namespace.blackhole()
    dead = f"{namespace.address}:{BLACKHOLED_PORT}"
    port = pysozu.free_port()
    pysozu.start(http_toml(port, [dead]), workers=1)
    (status, _), elapsed = timed(lambda: pysozu.http_get(port, "app.com", timeout=30))
    assert status == 503
    # It waited for the connect (a refusal is immediate) and tried it once: no other backend.
    assert CONNECT_TIMEOUT * 0.9 <= elapsed < LATEST, elapsed

    live = backends.start("live")
    port = pysozu.free_port()
    pysozu.start(http_toml(port, [dead, f"127.0.0.1:{live}"]), workers=1)
    answers = [timed(lambda: pysozu.http_get(port, "app.com", timeout=30)) for _ in range(4)]
    assert [answer for answer, _ in answers] == [(200, b"live")] * 4
    # The first request of the round robin went to the black hole: it answered only after the
    # connect timeout, from the next backend.
    assert CONNECT_TIMEOUT * 0.9 <= answers[0][1] < LATEST, answers


def tcp_toml(port: int, backends: list[str]) -> str:
    entries = ", ".join(
        f'{{ address = "{address}", backend_id = "t{n}" }}' for n, address in enumerate(backends)
    )
    return (
        f'worker_count = 1\n[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:{port}"\n'
        f"connect_timeout = {CONNECT_TIMEOUT}\n"
        f'[clusters.t]\nprotocol = "tcp"\nload_balancing = "ROUND_ROBIN"\n'
        f'frontends = [{{ address = "127.0.0.1:{port}" }}]\nbackends = [{entries}]\n'
    )


def echo_through(port: int, message: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(message)
        received = b""
        try:
            while len(received) < len(message) and (chunk := client.recv(65536)):
                received += chunk
        except ConnectionResetError:  # pysozu closed with the client's bytes unread
            pass
        return received


def test_tcp_listener_connect_timeout(pysozu: Any, namespace: Namespace) -> None:
    namespace.blackhole()
    dead = f"{namespace.address}:{BLACKHOLED_PORT}"
    port = pysozu.free_port()
    pysozu.start(tcp_toml(port, [dead]), workers=1)
    received, elapsed = timed(lambda: echo_through(port))
    assert received == b""  # closed by pysozu: no backend could be reached
    assert CONNECT_TIMEOUT * 0.9 <= elapsed < LATEST, elapsed

    echo = socket.create_server(("127.0.0.1", 0))
    echo_port = echo.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    try:
        port = pysozu.free_port()
        pysozu.start(tcp_toml(port, [dead, f"127.0.0.1:{echo_port}"]), workers=1)
        answers = [timed(lambda: echo_through(port)) for _ in range(3)]
        assert [answer for answer, _ in answers] == [b"ping"] * 3
        assert CONNECT_TIMEOUT * 0.9 <= answers[0][1] < LATEST, answers
    finally:
        echo.close()


def test_health_check_timeout_takes_a_black_holed_backend_out(
    pysozu: Any, backends: Any, namespace: Namespace
) -> None:
    inside = namespace.run(
        [sys.executable, "-m", "dataplane.main.demo", "--address",
         f"{namespace.address}:{BLACKHOLED_PORT}", "--body", "inside"]
    )  # fmt: skip
    namespace.wait_for_port(BLACKHOLED_PORT)
    local = backends.start("local")
    check = (
        '[clusters.app.health_check]\nuri = "/"\ninterval = 1\ntimeout = 1\n'
        "healthy_threshold = 2\nunhealthy_threshold = 2\n"
    )
    port = pysozu.free_port()
    addresses = [f"{namespace.address}:{BLACKHOLED_PORT}", f"127.0.0.1:{local}"]
    proxy = pysozu.start(http_toml(port, addresses, extra=check), workers=1)
    from test_observability_events import Watcher

    watcher = Watcher(proxy)
    try:
        assert bodies(pysozu, port) == {b"inside", b"local"}
        namespace.blackhole()
        unhealthy = watcher.wait_for(EventKind.HEALTH_CHECK_UNHEALTHY, timeout=20)
        assert unhealthy is not None and unhealthy["backend_id"] == "b0"
        assert inside.poll() is None  # the backend runs: only its replies are lost
        # Out of rotation: every request goes to the local backend, none waits for a connect.
        for _ in range(4):
            (status, body), elapsed = timed(lambda: pysozu.http_get(port, "app.com", timeout=30))
            assert (status, body) == (200, b"local")
            assert elapsed < CONNECT_TIMEOUT * 0.9, elapsed
        listed = proxy.cli("backend", "list", "-d", "app.com").stdout
        assert "unhealthy" in listed, listed
        namespace.restore()
        healthy = watcher.wait_for(EventKind.HEALTH_CHECK_HEALTHY, timeout=20)
        assert healthy is not None and healthy["backend_id"] == "b0"
        assert bodies(pysozu, port) == {b"inside", b"local"}
    finally:
        watcher.close()


def bodies(pysozu: Any, port: int, count: int = 6) -> set[bytes]:
    seen = set()
    for _ in range(count):
        status, body = pysozu.http_get(port, "app.com", timeout=30)
        assert status == 200, (status, body)
        seen.add(body)
    return seen
