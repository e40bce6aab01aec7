"""Lifecycle pieces that need no process: systemd addresses, upgrade data, CLI stop options."""

from __future__ import annotations

import argparse

import pytest

from dataplane.cli.tree import build_parser
from dataplane.command import codec
from dataplane.command.address import SocketAddress
from dataplane.command.messages import Cluster, ListenerType, Request
from dataplane.command.responses import RunState
from dataplane.main import notify
from dataplane.main.main_upgrade import HandedListener, HandedWorker, UpgradeData


@pytest.mark.parametrize(
    ("value", "address"),
    [("@systemd/notify", "\0systemd/notify"), ("/run/systemd/notify", "/run/systemd/notify")],
)
def test_notify_socket_addresses(value: str, address: str) -> None:
    assert notify._address(value) == address


def test_a_relative_notify_socket_is_refused() -> None:
    assert notify._address("notify.sock") is None


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False


def test_upgrade_data_round_trips() -> None:
    data = UpgradeData(
        command_socket_path="/run/pysozu/sozu.sock",
        command_socket_fd=3,
        config_path="/etc/pysozu/config.toml",
        next_worker_id=4,
        workers=[
            HandedWorker(
                id=2,
                pid=100,
                channel_fd=5,
                scm_fd=6,
                run_state=RunState.NOT_ANSWERING,
                version="0.1.0",
                started_at=1.5,
            )
        ],
        listeners=[
            HandedListener(
                proxy=ListenerType.HTTP, address=SocketAddress.parse("127.0.0.1:8080"), fd=7
            )
        ],
        state=[Request.of(add_cluster=Cluster(cluster_id="app"))],
        request_counts={"status": 3},
        worker_restarts=1,
        main_upgrades=2,
        demo_backend_pids=[42],
    )
    decoded = codec.decode(codec.encode(data), UpgradeData)
    assert decoded == data
    assert decoded.descriptors() == [3, 5, 6, 7]


def _build(*argv: str) -> Request:
    args = build_parser().parse_args(list(argv))
    request: Request = args.build(args)
    return request


def test_shutdown_options() -> None:
    assert _build("shutdown").verb == "soft_stop"
    assert _build("shutdown", "--deadline", "30").body.deadline_seconds == 30
    assert _build("shutdown", "--hard").verb == "hard_stop"
    with pytest.raises(argparse.ArgumentTypeError):
        _build("shutdown", "--deadline", "0")


def test_upgrade_requests() -> None:
    assert _build("upgrade", "--worker", "3").body == 3
    assert _build("upgrade").verb == "upgrade_main"
