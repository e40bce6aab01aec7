"""Every CLI verb of the foundation issue against a running pysozu, checked through --json."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(90)


def listener_only(pysozu: Any, port: int) -> str:
    return f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n'


def ok_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    assert answer["status"] == "OK", answer
    return answer


def content(answer: dict[str, Any], kind: str) -> Any:
    return answer["content"]["content_type"][kind]


def test_the_issue_walkthrough(pysozu: Any, backends: Any, tmp_path: Any) -> None:
    port = pysozu.free_port()
    backend = backends.start("app-1")
    proxy = pysozu.start(listener_only(pysozu, port))

    added = ok_json(
        proxy.cli("-j", "cluster", "add", "--id", "app", "--load-balancing-policy", "round_robin")
    )
    assert added["message"] == "Successfully applied request to all workers"
    ok_json(
        proxy.cli(
            "-j",
            "backend",
            "add",
            "--id",
            "app",
            "--backend-id",
            "app-1",
            "--address",
            f"127.0.0.1:{backend}",
        )
    )
    ok_json(
        proxy.cli(
            "-j",
            "frontend",
            "http",
            "add",
            "--address",
            f"127.0.0.1:{port}",
            "--hostname",
            "example.com",
            "id",
            "app",
        )
    )
    # traffic follows at once: no restart, no wait
    assert pysozu.http_get(port, "example.com") == (200, b"app-1")

    workers = content(ok_json(proxy.cli("-j", "status")), "WORKERS")["vec"]
    assert len(workers) == 2
    assert all(w["run_state"] == "RUNNING" and w["version"] and w["pid"] > 0 for w in workers)

    fronts = content(ok_json(proxy.cli("-j", "frontend", "list")), "FRONTEND_LIST")
    assert [(f["hostname"], f["cluster_id"]) for f in fronts["http_frontends"]] == [
        ("example.com", "app")
    ]
    listeners = content(ok_json(proxy.cli("-j", "listener", "list")), "LISTENERS_LIST")
    assert listeners["http_listeners"][f"127.0.0.1:{port}"]["active"] is True

    hashes = content(ok_json(proxy.cli("-j", "cluster", "list")), "WORKER_RESPONSES")["map"]
    assert set(hashes) == {"main", "0", "1"}
    assert len({json.dumps(v, sort_keys=True) for v in hashes.values()}) == 1  # all in sync
    by_id = content(ok_json(proxy.cli("-j", "cluster", "list", "-i", "app")), "WORKER_RESPONSES")
    main_view = by_id["map"]["main"]["content_type"]["CLUSTERS"]["vec"][0]
    assert main_view["backends"][0]["backend_id"] == "app-1"

    state_file = tmp_path / "state.json"
    saved = ok_json(proxy.cli("-j", "state", "save", "--file", str(state_file)))
    assert str(state_file) in saved["message"]
    records = [r for r in state_file.read_bytes().split(b"\n\0") if r.strip()]
    verbs = [next(iter(json.loads(r)["content"]["request_type"])) for r in records]
    assert verbs == [
        "ADD_HTTP_LISTENER",
        "ACTIVATE_LISTENER",
        "ADD_CLUSTER",
        "ADD_HTTP_FRONTEND",
        "ADD_BACKEND",
    ]

    stats = content(ok_json(proxy.cli("-j", "state", "stats")), "REQUEST_COUNTS")["map"]
    assert stats["add_cluster"] == 1 and stats["save_state"] == 1

    stopped = ok_json(proxy.cli("-j", "shutdown"))
    assert "stopped" in stopped["message"]
    assert proxy.process.wait(timeout=20) == 0


def test_a_refused_change_fails_with_the_reason(pysozu: Any) -> None:
    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    result = proxy.cli("-j", "cluster", "remove", "--id", "ghost")
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "FAILURE"
    assert "could not dispatch request on the main process state" in result.stderr
    assert "ghost" in result.stderr
    human = proxy.cli(
        "frontend", "http", "add", "-a", "127.0.0.1:9", "--hostname", "a.com", "id", "ghost"
    )
    assert human.returncode == 1 and human.stdout == ""
    assert "could not dispatch request on the main process state" in human.stderr


def test_a_busy_port_is_a_clear_failure(pysozu: Any) -> None:

    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        assert proxy.cli("listener", "http", "add", "-a", f"127.0.0.1:{busy}").returncode == 0
        result = proxy.cli("listener", "http", "activate", "-a", f"127.0.0.1:{busy}")
    assert result.returncode == 1
    assert f"127.0.0.1:{busy}: [Errno 98]" in result.stderr
    listeners = content(ok_json(proxy.cli("-j", "listener", "list")), "LISTENERS_LIST")
    assert listeners["http_listeners"][f"127.0.0.1:{busy}"]["active"] is False


def test_human_tables(pysozu: Any) -> None:
    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    status = proxy.cli("status")
    assert status.returncode == 0
    main, header, *rows = status.stdout.splitlines()
    assert main.startswith(f"main: pid {proxy.process.pid}, version ")
    assert header.split() == [
        *("WORKER", "PID", "STATE", "VERSION", "UPTIME", "CONNECTIONS", "UNHEALTHY", "BACKENDS")
    ]
    assert len(rows) == 2 and all("RUNNING" in row for row in rows)
    # the workers report open connections and backends their health checks hold out: none
    assert all(row.split()[-2:] == ["0", "0"] for row in rows)
    assert proxy.cli("listener", "list").stdout.splitlines()[0].split()[:2] == [
        "PROTOCOL",
        "ADDRESS",
    ]


def test_events_stream_configuration_changes(pysozu: Any) -> None:
    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "dataplane", "-c", str(proxy.config_path), "-j", "events"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())
        assert content(first, "EVENT")["kind"] == "EVENTS_SUBSCRIBED"
        assert proxy.cli("cluster", "add", "-i", "watched").returncode == 0
        event = content(json.loads(watcher.stdout.readline()), "EVENT")
        assert (event["kind"], event["cluster_id"]) == ("CLUSTER_ADDED", "watched")
    finally:
        watcher.kill()
        watcher.wait()


def test_reload_applies_the_difference(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    one, two = backends.start("one"), backends.start("two")
    proxy = pysozu.start(pysozu.http_config(port, {"one": ("one.com", [one])}))
    assert proxy.cli("cluster", "add", "-i", "runtime-only").returncode == 0
    config = proxy.config_path.read_text()
    proxy.config_path.write_text(
        config + "\n" + pysozu.http_config(port, {"two": ("two.com", [two])}).split("\n\n", 1)[1]
    )
    reloaded = ok_json(proxy.cli("-j", "reload"))
    assert "ok messages, 0 errors" in reloaded["message"]
    assert pysozu.http_get(port, "two.com") == (200, b"two")
    assert pysozu.http_get(port, "one.com") == (200, b"one")
    clusters = content(ok_json(proxy.cli("-j", "cluster", "list")), "WORKER_RESPONSES")
    hashes = clusters["map"]["main"]["content_type"]["CLUSTER_HASHES"]["map"]
    assert set(hashes) == {"one", "two", "runtime-only"}  # runtime changes survive a reload
    again = ok_json(proxy.cli("-j", "reload"))
    assert again["message"].endswith("nothing changed")


def test_state_load_merges(pysozu: Any, backends: Any, tmp_path: Any) -> None:
    port = pysozu.free_port()
    backend = backends.start("loaded")
    donor = pysozu.start(pysozu.http_config(port, {"app": ("load.com", [backend])}))
    state_file = tmp_path / "donor.state"
    ok_json(donor.cli("-j", "state", "save", "-f", str(state_file)))
    donor.stop()
    port2 = pysozu.free_port()
    proxy = pysozu.start(f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port2}"\n')
    # the donor's listener is another port: records that need it load with it
    loaded = ok_json(proxy.cli("-j", "state", "load", "-f", str(state_file)))
    assert loaded["message"].endswith("5 ok messages, 0 errors"), loaded
    assert pysozu.http_get(port, "load.com") == (200, b"loaded")
    again = ok_json(proxy.cli("-j", "state", "load", "-f", str(state_file)))
    assert "errors" in again["message"] and not again["message"].endswith(" 0 errors")


def test_upgrade_of_an_unknown_worker_fails(pysozu: Any) -> None:
    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    result = proxy.cli("upgrade", "--worker", "7")
    assert result.returncode == 1
    assert "there is no live worker 7" in result.stderr


def test_logging_level_changes(pysozu: Any) -> None:
    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    proxy.cli("status")
    assert "MAIN DEBUG" not in proxy.log()
    assert proxy.cli("logging", "debug").returncode == 0
    proxy.cli("status")
    deadline = time.monotonic() + 5
    while "MAIN DEBUG client" not in proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "MAIN DEBUG client" in proxy.log()
    bad = proxy.cli("logging", "loud")
    assert bad.returncode == 1 and "unknown log level" in bad.stderr


def test_a_listener_added_at_runtime_serves_through_every_worker(
    pysozu: Any, backends: Any
) -> None:

    backend = backends.start("late")
    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    port = pysozu.free_port()
    for argv in (
        ["listener", "http", "add", "-a", f"127.0.0.1:{port}"],
        ["listener", "http", "activate", "-a", f"127.0.0.1:{port}"],
        ["cluster", "add", "-i", "late"],
        ["backend", "add", "-i", "late", "--backend-id", "l1", "-a", f"127.0.0.1:{backend}"],
        [
            "frontend",
            "http",
            "add",
            "-a",
            f"127.0.0.1:{port}",
            "--hostname",
            "late.com",
            "id",
            "late",
        ],
    ):
        result = proxy.cli(*argv)
        assert result.returncode == 0, (argv, result.stderr)
    # many fresh connections: whichever worker accepts, it serves main's shared socket
    assert all(pysozu.http_get(port, "late.com") == (200, b"late") for _ in range(20))
    assert proxy.cli("listener", "http", "deactivate", "-a", f"127.0.0.1:{port}").returncode == 0
    with socket.socket() as probe:  # main and every worker closed their copy: the port is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                probe.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the deactivated port is still bound"
                time.sleep(0.05)


def test_file_errors_and_hard_shutdown(pysozu: Any, tmp_path: Any) -> None:
    proxy = pysozu.start(listener_only(pysozu, pysozu.free_port()))
    missing = proxy.cli("state", "load", "-f", str(tmp_path / "none.state"))
    assert missing.returncode == 1
    assert "could not load the state from" in missing.stderr
    unwritable = proxy.cli("state", "save", "-f", str(tmp_path / "no" / "dir" / "x.state"))
    assert unwritable.returncode == 1
    assert "could not save the state to" in unwritable.stderr
    hard = ok_json(proxy.cli("-j", "shutdown", "--hard"))
    assert hard["message"] == "Proxy stopped"
    assert proxy.process.wait(timeout=20) == 0
    assert "Traceback" not in proxy.log()


def test_metrics_get_prints_cluster_and_backend_figures(pysozu: Any, backends: Any) -> None:
    """As sozu's text: PROXYING, then Clusters, one block per cluster and per backend."""
    port = pysozu.free_port()
    backend = backends.start("m")
    metrics = '[metrics]\naddress = "127.0.0.1:8125"\ndetail = "BACKEND"\n'
    proxy = pysozu.start(metrics + pysozu.http_config(port, {"app": ("m.com", [backend])}))
    for _ in range(3):
        assert pysozu.http_get(port, "m.com") == (200, b"m")
    shown = proxy.cli("metrics", "get")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "\nPROXYING\n" in text and "\nClusters\n" in text
    cluster = text.partition("\nCluster app\n")[2].partition("\napp/app-1\n")
    assert re.search(r"^http\.requests +3 *$", cluster[0], re.MULTILINE), text
    assert re.search(r"^http\.status\.2xx +3 *$", cluster[2], re.MULTILINE), text
    assert re.search(r"^request_time +3 ", cluster[0], re.MULTILINE), text
    only_process = proxy.cli("metrics", "get", "--no-clusters").stdout
    assert "PROXYING" in only_process and "Cluster app" not in only_process


def test_metrics_are_gathered_from_the_workers(pysozu: Any, backends: Any) -> None:
    port = pysozu.free_port()
    backend = backends.start("m")
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("m.com", [backend])}))
    for _ in range(3):
        assert pysozu.http_get(port, "m.com") == (200, b"m")
    merged = content(ok_json(proxy.cli("-j", "metrics", "get")), "METRICS")
    assert merged["workers"] == {} and merged["proxying"]
    per_worker = content(ok_json(proxy.cli("-j", "metrics", "get", "-w")), "METRICS")
    assert set(per_worker["workers"]) == {"0", "1"}
    names = content(ok_json(proxy.cli("-j", "metrics", "get", "-l")), "AVAILABLE_METRICS")
    # The list names every metric once, labels stripped: the names `--names` filters on. The
    # merged view sums counts, gauges and histograms (as sozu), so both name the same metrics.
    assert {name.partition(":")[0] for name in merged["proxying"]} == set(names["proxy_metrics"])
    assert merged["proxying"]["http.status.2xx"]["inner"]["COUNT"] == 3
    histogram = merged["proxying"]["request_time"]["inner"]["HISTOGRAM"]
    assert histogram["count"] == 3 and histogram["buckets"]
    assert merged["clusters"]["app"]["cluster"]["http.requests"]["inner"]["COUNT"] == 3
    assert "request_time" in names["cluster_metrics"]
    only = content(ok_json(proxy.cli("-j", "metrics", "get", "-n", "request_time")), "METRICS")
    assert set(only["proxying"]) == {"request_time"}
