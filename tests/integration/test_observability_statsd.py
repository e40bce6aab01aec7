"""The StatsD drain of a real `pysozu start` (`[metrics] address`): a UDP socket of the test
receives the lines; exact names and values after known traffic, both line shapes, `prefix`,
`disable_cluster_metrics`, and a removed cluster whose keys stop."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

import dataplane
from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    Empty,
    PathRule,
    QueryMetricsOptions,
    RemoveBackend,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.responses import ResponseStatus

pytestmark = pytest.mark.timeout(60)

LINE = re.compile(
    r"^(?P<name>[^:]+):(?P<value>[0-9.]+)\|(?P<kind>c|g|ms)(?:\|@(?P<rate>[0-9.e-]+))?$"
)


class Receiver:
    """A StatsD server of sorts: every line received, with the largest datagram seen."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.largest = 0

    def collect(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                datagram = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.largest = max(self.largest, len(datagram))
            assert datagram.endswith(b"\n")
            self.lines.extend(datagram.decode().splitlines())

    def wait_for(self, done: Callable[[Receiver], bool], timeout: float = 10.0) -> None:
        until = time.monotonic() + timeout
        while not done(self) and time.monotonic() < until:
            self.collect(0.2)
        assert done(self), "\n".join(self.lines[-40:])

    def total(self, name: str | re.Pattern[str], kind: str = "c") -> float:
        """The sum of the values of the lines whose name matches (counted with their rate)."""
        found = 0.0
        for line in self.lines:
            match = LINE.match(line)
            assert match is not None, f"not a StatsD line: {line!r}"
            wanted = (
                match["name"] == name if isinstance(name, str) else name.fullmatch(match["name"])
            )
            if wanted and match["kind"] == kind:
                found += float(match["value"]) if kind != "ms" else 1 / float(match["rate"] or 1)
        return found

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver() -> Any:
    found = Receiver()
    yield found
    found.close()


def get(port: int, host: str, count: int) -> None:
    import http.client

    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/", headers={"Host": host})
        connection.getresponse().read()
        connection.close()


def metrics_toml(receiver: Receiver, *extra: str) -> str:
    return "\n".join(["[metrics]", f'address = "127.0.0.1:{receiver.port}"', *extra, ""])


def test_untagged_lines_count_the_requests_sent(
    pysozu: Any, backends: Any, receiver: Receiver
) -> None:
    listen = pysozu.free_port()
    routes = pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    pysozu.start(metrics_toml(receiver, 'detail = "backend"') + routes)
    get(listen, "app.com", 12)
    worker = r"sozu\.WRK-\d\d"
    requests = re.compile(worker + r"\.http\.requests")
    receiver.wait_for(lambda r: r.total(requests) >= 12)
    receiver.collect(2.5)  # later rounds add nothing: no traffic, no delta
    assert receiver.total(requests) == 12
    assert receiver.total(re.compile(worker + r"\.http\.status\.2xx")) == 12
    assert receiver.total(re.compile(worker + r"\.cluster\.app\.http\.requests")) == 12
    backend = re.compile(worker + r"\.cluster\.app\.backend\.app-1\.http\.status\.2xx")
    assert receiver.total(backend) == 12
    # timings: one |ms value per request (bucket values carry their sample rate)
    assert receiver.total(re.compile(worker + r"\.cluster\.app\.request_time"), "ms") == 12
    assert receiver.total(re.compile(worker + r"\.backend_response_time"), "ms") == 12
    assert "sozu.MAIN.configuration.clusters:1|g" in receiver.lines
    assert "sozu.MAIN.configuration.backends:1|g" in receiver.lines
    assert receiver.largest <= 1432


def test_tagged_lines_with_a_prefix(pysozu: Any, backends: Any, receiver: Receiver) -> None:
    listen = pysozu.free_port()
    routes = pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    toml = metrics_toml(receiver, "tagged_metrics = true", 'prefix = "edge"', 'detail = "backend"')
    pysozu.start(toml + routes)
    get(listen, "app.com", 5)
    tags = rf",origin=WRK-\d\d,version={re.escape(dataplane.__version__)}"
    process = re.compile(r"edge\.http\.requests" + tags)
    cluster = re.compile(r"edge\.cluster\.http\.requests" + tags + ",cluster_id=app")
    backend = re.compile(r"edge\.backend\.bytes_out" + tags + ",cluster_id=app,backend_id=app-1")
    receiver.wait_for(lambda r: r.total(process) >= 5 and r.total(cluster) >= 5)
    receiver.wait_for(lambda r: r.total(backend) > 0)
    assert receiver.total(process) == receiver.total(cluster) == 5
    assert not [line for line in receiver.lines if line.startswith("sozu")]
    main = f"edge.configuration.clusters,origin=MAIN,version={dataplane.__version__}:1|g"
    assert main in receiver.lines


def test_disable_cluster_metrics_sends_process_keys_only(
    pysozu: Any, backends: Any, receiver: Receiver
) -> None:
    listen = pysozu.free_port()
    routes = pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    proxy = pysozu.start("disable_cluster_metrics = true\n" + metrics_toml(receiver) + routes)
    get(listen, "app.com", 4)
    requests = re.compile(r"sozu\.WRK-\d\d\.http\.requests")
    receiver.wait_for(lambda r: r.total(requests) >= 4)
    receiver.collect(1.5)
    assert receiver.total(requests) == 4
    assert not [line for line in receiver.lines if ".cluster." in line]
    # and `metrics get`, as in sozu, keeps no cluster figures either
    answer = proxy.request(Request.of(query_metrics=QueryMetricsOptions()))
    assert answer.status == ResponseStatus.OK
    assert answer.content is not None and answer.content.value.clusters == {}
    assert answer.content.value.proxying["http.requests"].inner.count == 4


def test_a_removed_cluster_stops_at_once(pysozu: Any, backends: Any, receiver: Receiver) -> None:
    listen = pysozu.free_port()
    old_port = backends.start("old-1")
    clusters = {"app": ("app.com", [backends.start("app-1")]), "old": ("old.com", [old_port])}
    proxy = pysozu.start(metrics_toml(receiver) + pysozu.http_config(listen, clusters))
    get(listen, "old.com", 3)
    old = re.compile(r"sozu\.WRK-\d\d\.cluster\.old\..*")
    receiver.wait_for(
        lambda r: r.total(re.compile(r"sozu\.WRK-\d\d\.cluster\.old\.http\.requests")) == 3
    )
    address = SocketAddress.parse(f"127.0.0.1:{listen}")
    front = RequestHttpFrontend(
        cluster_id="old", address=address, hostname="old.com", path=PathRule()
    )
    backend = RemoveBackend(
        cluster_id="old", backend_id="old-1", address=SocketAddress.parse(f"127.0.0.1:{old_port}")
    )
    for request in (
        Request.of(remove_http_frontend=front),
        Request.of(remove_backend=backend),
        Request.of(remove_cluster="old"),
    ):
        answer = proxy.request(request)
        assert answer.status == ResponseStatus.OK, answer.message
    receiver.wait_for(lambda r: "sozu.MAIN.configuration.clusters:1|g" in r.lines)
    receiver.collect(1.2)  # a round that was under way
    receiver.lines.clear()
    get(listen, "old.com", 3)  # now answered 404 by the proxy: no cluster
    get(listen, "app.com", 2)
    app = re.compile(r"sozu\.WRK-\d\d\.cluster\.app\.http\.requests")
    receiver.wait_for(lambda r: r.total(app) >= 2)
    receiver.collect(1.5)
    assert not [line for line in receiver.lines if old.fullmatch(line.partition(":")[0])]
    assert receiver.total(re.compile(r"sozu\.WRK-\d\d\.http\.404\.errors")) == 3
    assert not [line for line in receiver.lines if "configuration" in line]  # unchanged


@pytest.mark.timeout(90)
def test_an_upgraded_main_goes_on_without_sending_counts_twice(
    pysozu: Any, backends: Any, receiver: Receiver
) -> None:
    listen = pysozu.free_port()
    routes = pysozu.http_config(listen, {"app": ("app.com", [backends.start("app-1")])})
    proxy = pysozu.start(metrics_toml(receiver) + routes)
    get(listen, "app.com", 5)
    requests = re.compile(r"sozu\.WRK-\d\d\.http\.requests")
    receiver.wait_for(lambda r: r.total(requests) >= 5)
    receiver.collect(1.5)
    receiver.lines.clear()  # the old main has nothing more to send: no traffic, same state
    try:
        answer = proxy.request(Request.of(upgrade_main=Empty()), timeout=60)
        assert answer.status == ResponseStatus.OK, answer.message + proxy.log()
        assert proxy.process.wait(timeout=10) == 0  # the new main sends from now on
        receiver.wait_for(lambda r: any(".MAIN." in line for line in r.lines))  # it started
        receiver.collect(1.5)
        assert receiver.total(requests) == 0  # the same workers: their 5 were sent already
        get(listen, "app.com", 3)
        receiver.wait_for(lambda r: r.total(requests) >= 3)
        receiver.collect(1.5)
        assert receiver.total(requests) == 3
    finally:
        assert proxy.cli("shutdown").returncode == 0
