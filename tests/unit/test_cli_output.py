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
            WorkerInfo(
                id=0,
                pid=123,
                run_state=RunState.RUNNING,
                version="0.1.0",
                connections=7,
                unhealthy_backends=1,
            ),
            WorkerInfo(id=11, pid=4, run_state=RunState.NOT_ANSWERING),
        ]
    )
    out = io.StringIO()
    output.show_workers(Response.ok(content=ResponseContent.of(workers=infos)), out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        *("WORKER", "PID", "STATE", "VERSION", "UPTIME", "CONNECTIONS", "UNHEALTHY", "BACKENDS")
    ]
    assert lines[1].split() == ["0", "123", "RUNNING", "0.1.0", "-", "7", "1"]
    assert lines[2].split() == ["11", "4", "NOT_ANSWERING", "-", "-", "-", "-"]
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
    assert json.loads(out.getvalue()) == {"status": "FAILURE", "message": "no", "content": None}


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


def test_json_gives_enum_values_by_name_in_the_wire_shape() -> None:
    from dataplane.command import codec
    from dataplane.command.messages import Cluster, LoadBalancingAlgorithms, Request

    infos = WorkerInfos(vec=[WorkerInfo(id=0, pid=9, run_state=RunState.NOT_ANSWERING)])
    response = Response.ok(content=ResponseContent.of(workers=infos))
    named = output.named(response)
    assert named["status"] == "OK"
    assert named["content"]["content_type"]["WORKERS"]["vec"][0]["run_state"] == "NOT_ANSWERING"
    wire = codec.to_builtins(response)  # the same keys and values, but for the enums
    wire["status"] = "OK"
    wire["content"]["content_type"]["WORKERS"]["vec"][0]["run_state"] = "NOT_ANSWERING"
    assert named == wire
    cluster = Cluster(cluster_id="app", load_balancing=LoadBalancingAlgorithms.RANDOM)
    request = output.named(Request.of(add_cluster=cluster))
    assert list(request["request_type"]) == ["ADD_CLUSTER"]  # omit_defaults kept
    assert request["request_type"]["ADD_CLUSTER"]["load_balancing"] == "RANDOM"
    listener = output.named(HttpListenerConfig(address=SocketAddress.parse("127.0.0.1:80")))
    assert listener["address"] == codec.to_builtins(SocketAddress.parse("127.0.0.1:80"))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from dataplane.cli.app import main

    try:
        code = main(argv)
    except SystemExit as leaving:
        code = int(leaving.code or 0)
    said = capsys.readouterr()
    return code, said.out, said.err


def test_json_usage_errors_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["-j", "backend", "add", "--id", "app"], capsys)
    assert code == 2
    answer = json.loads(out)
    assert answer["status"] == "FAILURE" and "required" in answer["message"]
    assert "usage:" in err  # people still get argparse's help on stderr
    code, out, _ = run_cli(["backend", "add", "--id", "app"], capsys)
    assert code == 2 and out == ""  # without -j, nothing on stdout


def test_json_configuration_errors_are_json_too(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "bad.toml"
    config.write_text("worker_count = 'two'\n")
    code, out, err = run_cli(["-c", str(config), "--json", "status"], capsys)
    assert code == 1
    answer = json.loads(out)
    assert answer["status"] == "FAILURE" and "worker_count" in answer["message"]
    assert "worker_count" in err
    code, out, _ = run_cli(["-c", str(config), "-j", "config", "check"], capsys)
    assert code == 1 and json.loads(out)["status"] == "FAILURE"
