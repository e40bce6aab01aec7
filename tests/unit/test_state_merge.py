"""Reload: the three-way merge (state_merge.py), the order of its requests, a worker's side."""

from __future__ import annotations

import pytest
from hypothesis import given
from test_state import BACKEND, HTTP, HTTPS, apply, front, populated, replayed
from test_state_properties import SETTINGS, build, sequences

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    AddBackend,
    Cluster,
    HttpListenerConfig,
    HttpsListenerConfig,
    ListenerType,
    RemoveBackend,
    RemoveListener,
    Request,
    TlsVersion,
    UpdateHttpListenerConfig,
)
from dataplane.command.state import ConfigState
from dataplane.command.state_merge import three_way
from dataplane.proxy.clusters import HttpProxy

OTHER = SocketAddress.parse("127.0.0.1:18082")
RUNTIME = SocketAddress.parse("127.0.0.1:18083")
MOVED = SocketAddress.parse("127.0.0.1:8081")


def reload(live: ConfigState, before: ConfigState, after: ConfigState) -> list[Request]:
    """The requests a reload sends; they must apply cleanly to the live state."""
    target, conflicts = three_way(live, before, after)
    assert conflicts == []
    requests = live.diff(target)
    assert replayed(live, requests) == target
    return requests


def with_runtime_route(state: ConfigState) -> ConfigState:
    """`state` plus what an operator added through the command socket."""
    live = state.copy()
    apply(live, add_cluster=Cluster(cluster_id="runtime"))
    apply(live, add_http_frontend=front("runtime.com", "runtime"))
    apply(live, add_backend=AddBackend(cluster_id="runtime", backend_id="r", address=RUNTIME))
    return live


def test_an_unchanged_file_changes_nothing_whatever_the_runtime_did() -> None:
    file = populated()
    live = with_runtime_route(file)
    apply(live, update_http_listener=UpdateHttpListenerConfig(address=HTTP, public_address=OTHER))
    apply(live, remove_backend=RemoveBackend(cluster_id="app", backend_id="b", address=BACKEND))
    assert reload(live, file, populated()) == []


def test_the_files_change_is_applied_and_runtime_routes_stay() -> None:
    before = populated()
    live = with_runtime_route(before)
    after = populated()
    apply(after, add_backend=AddBackend(cluster_id="app", backend_id="b2", address=OTHER))
    requests = reload(live, before, after)
    assert [r.verb for r in requests] == ["add_backend"]
    target, _ = three_way(live, before, after)
    assert "runtime" in target.clusters and len(target.backends["app"]) == 2


def test_what_the_file_removes_goes_and_only_that() -> None:
    before = populated()
    apply(before, add_cluster=Cluster(cluster_id="gone"))
    live = with_runtime_route(before)
    requests = reload(live, before, populated())
    assert [r.verb for r in requests] == ["remove_cluster"]
    assert requests[0].body == "gone"


def test_the_files_change_wins_for_an_object_the_runtime_changed_too() -> None:
    before = populated()
    live = before.copy()
    apply(live, add_cluster=Cluster(cluster_id="app", sticky_session=True))  # by hand
    after = populated()
    apply(after, add_cluster=Cluster(cluster_id="app", https_redirect=True))  # in the file
    target, _ = three_way(live, before, after)
    assert target.clusters["app"] == after.clusters["app"]
    # A backend the file removes goes even if the runtime changed it.
    live = before.copy()
    apply(
        live, add_backend=AddBackend(cluster_id="app", backend_id="b", address=BACKEND, backup=True)
    )
    after = populated()
    apply(after, remove_backend=RemoveBackend(cluster_id="app", backend_id="b", address=BACKEND))
    assert [r.verb for r in reload(live, before, after)] == ["remove_backend"]


def test_a_listener_is_merged_setting_by_setting_with_an_update() -> None:
    before = populated()
    live = before.copy()
    apply(live, update_http_listener=UpdateHttpListenerConfig(address=HTTP, public_address=OTHER))
    after = populated()
    apply(after, update_http_listener=UpdateHttpListenerConfig(address=HTTP, front_timeout=5))
    requests = reload(live, before, after)
    assert [r.verb for r in requests] == ["update_http_listener"]
    assert requests[0].body.front_timeout == 5 and requests[0].body.public_address is None
    target, _ = three_way(live, before, after)
    assert target.http_listeners[HTTP].public_address == OTHER  # the runtime's stays


def test_a_change_no_patch_can_say_recreates_the_listener_at_its_address() -> None:
    before = populated()
    live = with_runtime_route(before)
    after = ConfigState()
    for request in before.generate_requests():
        if request.verb == "add_https_listener":
            tls13 = HttpsListenerConfig(address=HTTPS, versions=[TlsVersion.TLS_V1_3])
            request = Request.of(add_https_listener=tls13)
        after.dispatch(request)
    verbs = [r.verb for r in reload(live, before, after)]
    assert verbs.index("remove_listener") < verbs.index("add_https_listener")


def test_an_address_change_adds_and_activates_the_new_listener_before_the_old_goes() -> None:
    before = populated()
    live = with_runtime_route(before)
    apply(live, add_http_listener=HttpListenerConfig(address=MOVED))
    after = ConfigState()
    moved = SocketAddress.parse("127.0.0.1:8090")
    for request in before.generate_requests():
        body = request.body
        if request.verb == "add_http_listener":
            request = Request.of(add_http_listener=HttpListenerConfig(address=moved))
        elif request.verb == "activate_listener" and body.address == HTTP:
            request = Request.of(
                activate_listener=ActivateListener(address=moved, proxy=ListenerType.HTTP)
            )
        elif request.verb == "add_http_frontend":
            request = Request.of(add_http_frontend=front(address=moved))
        after.dispatch(request)
    target, conflicts = three_way(live, before, after)
    # The runtime's frontend on the old address keeps its listener there: named, not lost.
    assert (
        len(conflicts) == 1
        and "127.0.0.1:8080 was removed from the file but kept" in (conflicts[0])
    )
    assert HTTP in target.http_listeners and moved in target.http_listeners
    # Without the runtime's frontend, the old listener goes, after the new one serves.
    live = before.copy()
    verbs = [(r.verb, getattr(r.body, "address", None)) for r in reload(live, before, after)]
    assert verbs.index(("activate_listener", moved)) < verbs.index(("deactivate_listener", HTTP))
    assert verbs.index(("add_http_frontend", moved)) < verbs.index(("remove_http_frontend", HTTP))
    assert verbs[-1] == ("remove_listener", HTTP)


@pytest.mark.timeout(120)
@SETTINGS
@given(sequences, sequences)
def test_with_no_runtime_change_a_reload_reaches_the_file(
    first: list[Request], second: list[Request]
) -> None:
    before, after = build(first), build(second)
    assert three_way(before.copy(), before, after) == (after, [])


@pytest.mark.timeout(120)
@SETTINGS
@given(sequences, sequences)
def test_an_unchanged_file_leaves_any_live_state_alone(
    first: list[Request], second: list[Request]
) -> None:
    file, live = build(first), build(second)
    assert three_way(live, file, file.copy()) == (live, [])


def test_a_worker_recreating_an_http_listener_keeps_the_object_its_connections_hold() -> None:
    proxy = HttpProxy(max_connections_per_ip=0, retry_after=0)
    proxy.apply(Request.of(add_http_listener=HttpListenerConfig(address=HTTP)))
    held = proxy.listeners[HTTP]  # what an open connection refers to
    proxy.apply(Request.of(remove_listener=RemoveListener(address=HTTP, proxy=ListenerType.HTTP)))
    recreated = HttpListenerConfig(address=HTTP, front_timeout=7)
    proxy.apply(Request.of(add_http_listener=recreated))
    proxy.apply(Request.of(add_http_frontend=front()))
    assert proxy.listeners[HTTP] is held
    assert held.config == recreated and held.front_timeout == 7
    assert held.router.lookup("example.com", "/", "GET") is not None


def test_a_workers_listener_update_keeps_the_other_custom_answers() -> None:
    """A runtime `listener http update --answer-404` (or a reload's update) must not drop the
    listener's other answers in the worker while main's state keeps them."""
    proxy, state = HttpProxy(max_connections_per_ip=0, retry_after=0), ConfigState()
    added = HttpListenerConfig(address=HTTP, answers={"503": "HTTP/1.1 503 x\r\n\r\n"})
    patch = UpdateHttpListenerConfig(address=HTTP, answers={"404": "HTTP/1.1 404 y\r\n\r\n"})
    for request in (Request.of(add_http_listener=added), Request.of(update_http_listener=patch)):
        state.dispatch(request)
        proxy.apply(request)
    assert proxy.listeners[HTTP].config.answers == state.http_listeners[HTTP].answers
    assert sorted(state.http_listeners[HTTP].answers) == ["404", "503"]
