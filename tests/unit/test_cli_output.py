"""Human output of the CLI: aligned tables, uptimes, events."""

from __future__ import annotations

import io
import json

import pytest

from dataplane.cli import output
from dataplane.command.address import SocketAddress
from dataplane.command.messages import HttpListenerConfig, TcpListenerConfig
from dataplane.command.responses import (
    Event,
    EventKind,
    ListenersList,
    Response,
    ResponseContent,
    RunState,
    WorkerInfo,
    WorkerInfos,
)

pytestmark = pytest.mark.timeout(10)


def test_uptime() -> None:
    assert output.uptime(None) == "-"
    assert output.uptime(100.0, now=165.0) == "1m05s"
    assert output.uptime(0.0, now=3 * 3600 + 62) == "3h01m02s"


def test_status_table_is_aligned() -> None:
    infos = WorkerInfos(
        vec=[
            WorkerInfo(id=0, pid=123, run_state=RunState.RUNNING, version="0.1.0", connections=7),
            WorkerInfo(id=11, pid=4, run_state=RunState.NOT_ANSWERING),
        ]
    )
    out = io.StringIO()
    output.show_workers(Response.ok(content=ResponseContent.of(workers=infos)), out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["WORKER", "PID", "STATE", "VERSION", "UPTIME", "CONNECTIONS"]
    assert lines[1].split() == ["0", "123", "RUNNING", "0.1.0", "-", "7"]
    assert lines[2].split() == ["11", "4", "NOT_ANSWERING", "-", "-", "-"]
    assert lines[1].index("RUNNING") == lines[2].index("NOT_ANSWERING")


def test_events_print_one_line_each() -> None:
    event = Event(
        kind=EventKind.BACKEND_DOWN, cluster_id="app", address=SocketAddress.parse("127.0.0.1:3000")
    )
    out = io.StringIO()
    output.show_event(Response.processing("WRK-01", ResponseContent.of(event=event)), out)
    assert out.getvalue() == "WRK-01 BACKEND_DOWN cluster_id=app address=127.0.0.1:3000\n"


def test_json_is_the_wire_shape() -> None:
    out = io.StringIO()
    output.print_json(Response.failure("no"), out)
    assert json.loads(out.getvalue()) == {"status": 2, "message": "no", "content": None}


def test_listener_list_shows_trusted_proxies() -> None:
    http = HttpListenerConfig(
        address=SocketAddress.parse("0.0.0.0:80"), trusted_proxies=["10.0.0.0/8", "::1"]
    )
    tcp = TcpListenerConfig(address=SocketAddress.parse("0.0.0.0:9000"))
    listeners = ListenersList(
        http_listeners={"0.0.0.0:80": http}, tcp_listeners={"0.0.0.0:9000": tcp}
    )
    out = io.StringIO()
    output.show_listeners(Response.ok(content=ResponseContent.of(listeners_list=listeners)), out)
    lines = [line.split("  ") for line in out.getvalue().splitlines()]
    rows = [[cell.strip() for cell in line if cell.strip()] for line in lines]
    assert rows[0] == [
        "PROTOCOL",
        "ADDRESS",
        "ACTIVE",
        "PUBLIC ADDRESS",
        "TRUSTED PROXIES",
        "BODY MIN RATE",
    ]
    assert rows[1] == ["HTTP", "0.0.0.0:80", "no", "-", "10.0.0.0/8,::1", "500 B/s per 30 s"]
    assert rows[2] == ["TCP", "0.0.0.0:9000", "no", "-", "-", "-"]
