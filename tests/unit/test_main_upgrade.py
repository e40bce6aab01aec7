"""Upgrading main: when it would end its own container main refuses; what it hands over."""

from __future__ import annotations

import pytest

from dataplane.command import codec
from dataplane.command.config import default_config
from dataplane.command.messages import Cluster, Request
from dataplane.command.state import ConfigState
from dataplane.main.main_upgrade import (
    CONTAINER_INITS,
    UpgradeData,
    ends_the_container,
    file_state,
)


@pytest.mark.parametrize("init", CONTAINER_INITS)
def test_under_a_container_init_the_old_mains_exit_would_end_everything(init: str) -> None:
    reason = ends_the_container(pid=7, parent_pid=1, parent_name=init)
    assert reason == f"main runs under {init} (pid 1), which exits when main exits"


def test_as_pid_1_the_old_mains_exit_would_end_everything() -> None:
    assert ends_the_container(pid=1, parent_pid=0, parent_name="") is not None


@pytest.mark.parametrize("parent", ["systemd", "bash", "python3", "s6-supervise", ""])
def test_under_a_service_manager_or_a_shell_main_upgrades(parent: str) -> None:
    assert ends_the_container(pid=4242, parent_pid=1, parent_name=parent) is None


def _handed(file_state: list[Request] | None) -> UpgradeData:
    return UpgradeData(
        command_socket_path="/tmp/x.sock",
        command_socket_fd=3,
        config_path=None,
        next_worker_id=2,
        workers=[],
        listeners=[],
        state=[],
        request_counts={},
        file_state=file_state,
    )


def test_the_configuration_last_read_survives_an_upgrade() -> None:
    last_read = ConfigState()
    last_read.dispatch(Request.of(add_cluster=Cluster(cluster_id="read-at-start")))
    data = codec.decode(codec.encode(_handed(last_read.generate_requests())), UpgradeData)
    assert file_state(data, default_config()) == last_read


def test_from_a_main_that_did_not_keep_it_the_file_as_read_now_stands_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = b'{"command_socket_path": "/tmp/x.sock", "command_socket_fd": 3, "config_path": null,'
    old += b' "next_worker_id": 2, "workers": [], "listeners": [], "state": [],'
    old += b' "request_counts": {}}'  # what a main without `file_state` writes
    data = codec.decode(old, UpgradeData)
    config = default_config()
    expected = ConfigState()
    for request in config.generate_requests():
        expected.dispatch(request)
    assert file_state(data, config) == expected
    assert "did not hand over the configuration it last read" in caplog.text
