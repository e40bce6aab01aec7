"""Reconfiguration under load: `reload` of a changed file, SIGHUP, 200 hot changes.

None of them restarts anything: every connection and request must survive.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from https_support import Pki, TlsClient, https_config, insecure_context
from load import Counts, Load

from dataplane.cli.client import CommandClient
from dataplane.command.address import SocketAddress
from dataplane.command.messages import AddBackend, Empty, RemoveBackend, Request
from dataplane.command.responses import ResponseStatus
from dataplane.command.statefile import read_state_file

pytestmark = pytest.mark.timeout(60)


def _nothing_lost(counts: Counts) -> None:
    assert counts.answered > 500, counts.summary()
    nothing = {"failed": 0, "refused": 0, "reset": 0, "idle_closed": 0, "retried": 0}
    assert {name: getattr(counts, name) for name in nothing} == nothing, counts.summary()


def _wait_for(pysozu: Any, port: int, host: str, body: bytes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while pysozu.http_get(port, host) != (200, body):
        assert time.monotonic() < deadline, f"{host} never answered {body!r}"
        time.sleep(0.05)


def test_reload_of_a_changed_file_under_load(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    app, app2, other = backends.start("app"), backends.start("app"), backends.start("other")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    changed = pysozu.http_config(
        port, {"app": ("example.com", [app, app2]), "other": ("other.com", [other])}
    )
    outputs: list[Any] = []

    def reload() -> None:
        pysozu.write_config(changed, proxy.directory)
        outputs.append(proxy.cli("reload"))

    counts = Load(port, "example.com").during(reload, before=1.5, after=1.5)
    assert outputs[0].returncode == 0, outputs[0].stderr
    # Only the difference: backend app-2, cluster other, its frontend and its backend.
    assert "4 ok messages, 0 errors" in outputs[0].stdout
    assert pysozu.http_get(port, "other.com") == (200, b"other")
    _nothing_lost(counts)


def test_sighup_reloads_the_file(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    app, other = backends.start("app"), backends.start("other")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    changed = pysozu.http_config(
        port, {"app": ("example.com", [app]), "other": ("other.com", [other])}
    )
    pysozu.write_config(changed, proxy.directory)
    os.kill(proxy.process.pid, signal.SIGHUP)
    _wait_for(pysozu, port, "other.com", b"other")
    assert "received SIGHUP: reloading" in proxy.log()


def test_200_hot_changes_under_load_are_saved_atomically(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    app, app2 = backends.start("app"), backends.start("app")
    saved = 'automatic_state_save = true\nsaved_state = "state.json"\n'
    proxy = pysozu.start(saved + pysozu.http_config(port, {"app": ("example.com", [app])}))
    address = SocketAddress.parse(f"127.0.0.1:{app2}")
    add = Request.of(add_backend=AddBackend(cluster_id="app", backend_id="b2", address=address))
    remove = Request.of(
        remove_backend=RemoveBackend(cluster_id="app", backend_id="b2", address=address)
    )
    answers: list[int] = []

    def change() -> None:
        with CommandClient(proxy.socket_path, 15.0, 10_000_000) as client:
            for n in range(200):
                answers.append(client.request(add if n % 2 == 0 else remove).status)
                if n % 2 == 0:  # the saved file is whole at every moment
                    requests, errors = read_state_file(proxy.directory / "state.json")
                    assert not errors and requests

    counts = Load(port, "example.com").during(change, before=1.0, after=1.0)
    assert answers == [ResponseStatus.OK] * 200
    requests, errors = read_state_file(proxy.directory / "state.json")
    assert not errors
    verbs = [r.verb for r in requests]
    assert verbs.count("add_backend") == 1  # b2 was removed last
    _nothing_lost(counts)


def _http_listeners(proxy: Any) -> dict[str, Any]:
    response = proxy.request(Request.of(list_listeners=Empty()))
    assert response.status == ResponseStatus.OK and response.content is not None
    return dict(response.content.value.http_listeners)


def _ok(output: Any) -> str:
    assert output.returncode == 0, output.stdout + output.stderr
    return str(output.stdout)


def test_reload_keeps_a_listener_updated_at_runtime_online(pysozu: Any, backends: Any) -> None:
    port, public = pysozu.free_port(), pysozu.free_port()
    app = backends.start("app")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    address = f"127.0.0.1:{port}"
    _ok(
        proxy.cli(
            "listener", "http", "update", "-a", address, "--public-address", f"127.0.0.1:{public}"
        )
    )
    assert "nothing changed" in _ok(proxy.cli("reload"))
    listener = _http_listeners(proxy)[address]
    assert listener.active and str(listener.public_address) == f"127.0.0.1:{public}"
    assert pysozu.http_get(port, "example.com") == (200, b"app")
    # The file changes a setting of that listener: an update, the socket stays open.
    config = proxy.config_path.read_text()
    proxy.config_path.write_text(
        config.replace('protocol = "http"\n', 'protocol = "http"\nfront_timeout = 7\n', 1)
    )
    outputs: list[Any] = []
    counts = Load(port, "example.com").during(
        lambda: outputs.append(proxy.cli("reload")), before=1.0, after=1.0
    )
    assert "1 ok messages, 0 errors" in _ok(outputs[0])
    listener = _http_listeners(proxy)[address]
    assert listener.active and listener.front_timeout == 7
    assert str(listener.public_address) == f"127.0.0.1:{public}"  # the runtime's setting stays
    _nothing_lost(counts)
    assert "Address already in use" not in proxy.log()


def test_reload_moves_a_listener_new_address_first(pysozu: Any, backends: Any) -> None:
    port, moved = pysozu.free_port(), pysozu.free_port()
    app = backends.start("app")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    pysozu.write_config(pysozu.http_config(moved, {"app": ("example.com", [app])}), proxy.directory)
    _ok(proxy.cli("reload"))
    assert pysozu.http_get(moved, "example.com") == (200, b"app")
    assert set(_http_listeners(proxy)) == {f"127.0.0.1:{moved}"}
    with pytest.raises(OSError):
        pysozu.http_get(port, "example.com")


def test_reload_keeps_runtime_routes_and_the_saved_state_too(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    app, app2, runtime = backends.start("app"), backends.start("app"), backends.start("runtime")
    saved = 'automatic_state_save = true\nsaved_state = "state.json"\n'
    proxy = pysozu.start(
        saved + pysozu.http_config(port, {"app": ("example.com", [app]), "old": ("old.com", [app])})
    )
    address = f"127.0.0.1:{port}"
    _ok(proxy.cli("cluster", "add", "-i", "runtime"))
    _ok(
        proxy.cli(
            "frontend", "http", "add", "-a", address, "--hostname", "runtime.com", "id", "runtime"
        )
    )
    _ok(
        proxy.cli(
            "backend", "add", "-i", "runtime", "--backend-id", "r1", "-a", f"127.0.0.1:{runtime}"
        )
    )
    assert pysozu.http_get(port, "runtime.com") == (200, b"runtime")
    # The file gains a backend for app and loses cluster old: that, and only that, happens.
    pysozu.write_config(
        saved + pysozu.http_config(port, {"app": ("example.com", [app, app2])}), proxy.directory
    )
    answer = _ok(proxy.cli("reload"))
    assert "4 ok messages, 0 errors" in answer, answer  # +backend; -frontend -backend -cluster
    assert pysozu.http_get(port, "runtime.com") == (200, b"runtime")
    assert pysozu.http_get(port, "old.com")[0] == 404
    requests, errors = read_state_file(proxy.directory / "state.json")
    assert not errors
    assert "runtime" in [r.body.cluster_id for r in requests if r.verb == "add_cluster"]
    assert "old" not in [r.body.cluster_id for r in requests if r.verb == "add_cluster"]
    # A restart replays the saved state: the runtime route is still there.
    assert proxy.stop() == 0
    restarted = pysozu.start_file(proxy.config_path, proxy.socket_path)
    assert pysozu.http_get(port, "runtime.com") == (200, b"runtime")
    assert "nothing changed" in _ok(restarted.cli("reload"))
    assert pysozu.http_get(port, "runtime.com") == (200, b"runtime")


def test_reload_recreates_a_listener_on_the_same_socket(pysozu: Any, backends: Any) -> None:
    """A change no update can say (a setting the file no longer sets): the listener is removed
    and added again, served on the socket main kept: no re-bind, nothing refused or lost."""
    port, public = pysozu.free_port(), pysozu.free_port()
    app = backends.start("app")
    plain = pysozu.http_config(port, {"app": ("example.com", [app])})
    with_public = plain.replace(
        'protocol = "http"\n', f'protocol = "http"\npublic_address = "127.0.0.1:{public}"\n', 1
    )
    proxy = pysozu.start(with_public)
    pysozu.write_config(plain, proxy.directory)
    outputs: list[Any] = []
    counts = Load(port, "example.com").during(
        lambda: outputs.append(proxy.cli("reload")), before=1.0, after=1.0
    )
    answer = _ok(outputs[0])
    assert "6 ok messages, 0 errors" in answer, answer  # -front -listener +listener +front
    listener = _http_listeners(proxy)[f"127.0.0.1:{port}"]
    assert listener.active and listener.public_address is None
    _nothing_lost(counts)


@pytest.mark.timeout(120)
def test_reload_after_an_upgrade_of_main_compares_with_the_file_read_before(
    pysozu: Any, backends: Any
) -> None:
    port = pysozu.free_port()
    app, other, runtime = backends.start("app"), backends.start("other"), backends.start("rt")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    address = f"127.0.0.1:{port}"
    _ok(proxy.cli("cluster", "add", "-i", "rt"))
    _ok(proxy.cli("frontend", "http", "add", "-a", address, "--hostname", "rt.com", "id", "rt"))
    _ok(proxy.cli("backend", "add", "-i", "rt", "--backend-id", "r1", "-a", f"127.0.0.1:{runtime}"))
    # The file changes before the upgrade, and is reloaded only after it.
    changed = pysozu.http_config(
        port, {"app": ("example.com", [app]), "other": ("other.com", [other])}
    )
    pysozu.write_config(changed, proxy.directory)
    upgraded = proxy.cli("upgrade", timeout=60)
    assert upgraded.returncode == 0, upgraded.stderr + proxy.log()
    assert proxy.process.wait(timeout=10) == 0
    answer = _ok(proxy.cli("reload"))
    assert "3 ok messages, 0 errors" in answer, answer  # other: cluster, frontend, backend
    assert pysozu.http_get(port, "other.com") == (200, b"other")
    assert pysozu.http_get(port, "rt.com") == (200, b"rt")
    assert _ok(proxy.cli("shutdown"))


def test_reload_turns_an_http_listener_into_https_on_the_same_socket(
    pysozu: Any, backends: Any, tmp_path: Any
) -> None:
    port = pysozu.free_port()
    app = backends.start("app")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [app])}))
    cert = Pki(tmp_path).issue("example.com")
    pysozu.write_config(https_config(port, {"app": ("example.com", app, cert)}), proxy.directory)
    answer = _ok(proxy.cli("reload"))
    assert "0 errors" in answer, answer
    assert "Address already in use" not in proxy.log()
    with TlsClient(port, "example.com", insecure_context()) as client:
        response = client.get("example.com")
        assert (response.status, response.body) == (200, b"app")  # type: ignore[attr-defined]
