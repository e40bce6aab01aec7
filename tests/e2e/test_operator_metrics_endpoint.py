"""/metrics on the controller's health port, end to end: the counters move when an Ingress
changes (a pushed round, a new sync time, the Ingress counted served, then failing closed)."""

from __future__ import annotations

import http.client

import pytest
from conftest import World, free_port, wait_for
from objects import endpoint_slice, ingress, ingress_class, service
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(120)


def scrape(world: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = world.health("/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_move_after_an_ingress_change(world: World) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(
        ingress_class(), service("app"), endpoint_slice("app", ["127.0.0.2"], world.backend_port)
    )
    world.start_operator()
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    pushed = ("pysozu_ingress_reconciles_total", (("result", "pushed"),))
    served = ("pysozu_ingress_ingresses", (("state", "served"),))
    closed = ("pysozu_ingress_ingresses", (("state", "failed_closed"),))
    synced = ("pysozu_ingress_last_successful_sync_timestamp_seconds", ())
    pushes = ("pysozu_ingress_config_push_duration_seconds_count", ())
    before = scrape(world)
    assert before[("pysozu_ingress_ready", ())] == 1
    assert before[synced] > 0
    assert before[served] == 0

    world.apply(ingress("app", "app.example", "app"))
    # The state gauges are set when the desired state is rendered, the push counters once it
    # has been pushed, a moment later: one scrape may fall between the two.
    after = wait_for(
        "the Ingress counted served and pushed",
        lambda: (
            (m := scrape(world))[served] == 1
            and m[pushed] > before[pushed]
            and m[pushes] > before[pushes]
            and m
        ),
    )
    assert after[synced] >= before[synced]
    assert wait_for("traffic", lambda: world.get("app.example")[0] == 200)

    restricted = {"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8"}
    world.apply(ingress("app", "app.example", "app", annotations=restricted))
    last = wait_for(
        "the Ingress failing closed, pushed",
        lambda: (m := scrape(world))[closed] == 1 and m[pushed] > after[pushed] and m,
    )
    assert last[served] == 0
    assert last[("pysozu_ingress_ingress_problems", (("reason", "AnnotationNotEnforced"),))] == 1
    assert wait_for("the 503", lambda: world.get("app.example")[0] == 503)
    leader, posted = ("pysozu_ingress_leader", ()), ("pysozu_ingress_events_posted_total", ())
    wait_for("the only replica leading", lambda: scrape(world)[leader] == 1)
    wait_for("the Warning Event posted", lambda: scrape(world)[posted] >= 1)


def test_dataplane_cluster_metrics_join_the_controllers_cluster_info(world: World) -> None:
    """The dataplane's `pysozu_cluster_*{cluster}` series join `pysozu_ingress_cluster_info`
    on `cluster` (as PromQL's `* on (cluster) group_left (namespace, ingress, service)`), and
    the config hash moves with the state pushed."""
    world.processes.pop("dataplane").stop()
    prometheus = free_port()
    with world.config.open("a") as config:
        config.write(f'\n[prometheus]\naddress = "127.0.0.1:{prometheus}"\n')
    world.start_dataplane()
    world.backend("127.0.0.2", "app-0")
    world.apply(
        ingress_class(),
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        ingress("shop", "shop.example", "app"),
    )
    world.start_operator()
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    for _ in range(3):
        assert wait_for("traffic", lambda: world.get("shop.example")[0] == 200)
    controller = scrape(world)
    info = {
        dict(labels)["cluster"]: dict(labels)
        for (name, labels), value in controller.items()
        if name == "pysozu_ingress_cluster_info" and value == 1
    }
    assert info == {
        "default/app:http": {
            "cluster": "default/app:http", "namespace": "default", "ingress": "shop",
            "service": "app",
        }
    }  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", prometheus, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    joined: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pysozu_cluster_http_requests_total":
                labels = info[sample.labels["cluster"]]  # every cluster has its Kubernetes names
                key = (labels["namespace"], labels["ingress"], labels["service"])
                joined[key] = joined.get(key, 0) + sample.value
    assert joined[("default", "shop", "app")] >= 3
    digest = controller[("pysozu_ingress_config_hash", ())]
    assert digest > 0
    world.apply(ingress("shop", "shop.example", "app", path="/cart"))
    wait_for(
        "a new config hash", lambda: scrape(world)[("pysozu_ingress_config_hash", ())] != digest
    )
