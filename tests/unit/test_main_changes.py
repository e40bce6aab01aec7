"""Main applies a change to its own state first; a refused change touches nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import dataplane
from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    Cluster,
    HttpListenerConfig,
    ListenerType,
    Request,
    ServerConfig,
)
from dataplane.command.scm import Listeners
from dataplane.command.state import ConfigState
from dataplane.main.changes import ChangeRefused, StateKeeper
from dataplane.main.errors import ListenerBindError
from dataplane.main.events import EventHub
from dataplane.main.spawn import python_command, worker_argv

pytestmark = pytest.mark.timeout(10)

ADDRESS = SocketAddress.parse("127.0.0.1:8080")


class FakeSockets:
    """Stands in for ListenerSockets: records binds, can refuse one address."""

    def __init__(self, refuse: SocketAddress | None = None) -> None:
        self.bound: set[tuple[ListenerType, SocketAddress]] = set()
        self.refuse = refuse

    def __contains__(self, key: Any) -> bool:
        return key in self.bound

    def bind(self, address: SocketAddress, proxy: ListenerType) -> None:
        if address == self.refuse:
            raise ListenerBindError(f"could not bind HTTP listener {address}: [Errno 98] in use")
        self.bound.add((proxy, address))

    def close(self, address: SocketAddress, proxy: ListenerType) -> None:
        self.bound.discard((proxy, address))

    def for_scm(self, only: Any = None) -> Listeners:
        return Listeners()


def keeper(sockets: FakeSockets) -> StateKeeper:
    return StateKeeper(ConfigState(), sockets, EventHub())  # type: ignore[arg-type]


def activate() -> Request:
    return Request.of(activate_listener=ActivateListener(address=ADDRESS, proxy=ListenerType.HTTP))


def test_a_refused_change_says_so_and_changes_nothing() -> None:
    state_keeper = keeper(FakeSockets())
    with pytest.raises(ChangeRefused, match="could not dispatch request on the main process"):
        state_keeper.apply(Request.of(remove_cluster="nope"))
    assert state_keeper.state == ConfigState()
    assert not state_keeper.dirty


def test_activation_binds_first_and_hands_the_socket_over_scm() -> None:
    sockets = FakeSockets()
    state_keeper = keeper(sockets)
    state_keeper.apply(Request.of(add_http_listener=HttpListenerConfig(address=ADDRESS)))
    prepared = state_keeper.apply(activate())
    assert (ListenerType.HTTP, ADDRESS) in sockets.bound
    assert prepared.request.body.from_scm is True
    assert prepared.listeners is not None
    assert state_keeper.state.http_listeners[ADDRESS].active


def test_a_bind_error_leaves_the_state_untouched() -> None:
    state_keeper = keeper(FakeSockets(refuse=ADDRESS))
    state_keeper.apply(Request.of(add_http_listener=HttpListenerConfig(address=ADDRESS)))
    before = state_keeper.state.copy()
    with pytest.raises(ChangeRefused, match=r"127\.0\.0\.1:8080: \[Errno 98\]"):
        state_keeper.apply(activate())
    assert state_keeper.state == before


def test_activating_an_unknown_listener_releases_the_socket() -> None:
    sockets = FakeSockets()
    with pytest.raises(ChangeRefused):
        keeper(sockets).apply(activate())
    assert not sockets.bound


def test_a_good_change_marks_the_state_dirty() -> None:
    state_keeper = keeper(FakeSockets())
    state_keeper.apply(Request.of(add_cluster=Cluster(cluster_id="app")))
    assert state_keeper.dirty and "app" in state_keeper.state.clusters


def test_worker_command_line_is_lifecycle_md_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = worker_argv(
        3, 10, 11, 12, ServerConfig(command_buffer_size=5, max_command_buffer_size=9)
    )
    assert argv[1:] == [
        "-P",
        "-m",
        "dataplane",
        "worker",
        "--id",
        "3",
        "--fd",
        "10",
        "--scm",
        "11",
        "--configuration-state-fd",
        "12",
        "--command-buffer-size",
        "5",
        "--max-command-buffer-size",
        "9",
    ]


def test_children_import_from_main_s_directory_only_when_main_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A source checkout run with `python -m dataplane` from its root: the worker needs it too.
    monkeypatch.chdir(Path(dataplane.__file__).parent.parent)
    assert python_command() == [sys.executable, "-m", "dataplane"]


def test_children_start_when_main_s_directory_was_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    def removed() -> Path:
        raise FileNotFoundError("[Errno 2] No such file or directory")

    monkeypatch.setattr(Path, "cwd", staticmethod(removed))
    assert python_command() == [sys.executable, "-P", "-m", "dataplane"]
