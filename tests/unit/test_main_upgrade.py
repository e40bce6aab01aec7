"""When an upgrade of main would end its own container, main refuses it."""

from __future__ import annotations

import pytest

from dataplane.main.main_upgrade import CONTAINER_INITS, ends_the_container


@pytest.mark.parametrize("init", CONTAINER_INITS)
def test_under_a_container_init_the_old_mains_exit_would_end_everything(init: str) -> None:
    reason = ends_the_container(pid=7, parent_pid=1, parent_name=init)
    assert reason == f"main runs under {init} (pid 1), which exits when main exits"


def test_as_pid_1_the_old_mains_exit_would_end_everything() -> None:
    assert ends_the_container(pid=1, parent_pid=0, parent_name="") is not None


@pytest.mark.parametrize("parent", ["systemd", "bash", "python3", "s6-supervise", ""])
def test_under_a_service_manager_or_a_shell_main_upgrades(parent: str) -> None:
    assert ends_the_container(pid=4242, parent_pid=1, parent_name=parent) is None
