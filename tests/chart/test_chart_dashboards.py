"""The Grafana dashboard (charts/pysozu/dashboards/*.json): valid JSON of a sane shape, every
metric it queries exported by our code (names taken from the exporters, not typed by hand),
and shipped as a ConfigMap for Grafana's sidecar only when asked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from chart_tooling import CHART, IMAGE_VALUES, KUBE_VERSIONS, by_kind, render, run_tool
from ingress_operator.metrics import ControllerMetrics
from prometheus_client.parser import text_string_to_metric_families

from dataplane.main import prometheus
from dataplane.main.prometheus import MainFigures, WorkersCollector

pytestmark = pytest.mark.timeout(300)

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b(pysozu_[a-z0-9_]+)\b")
SCOPES = {"p": "process", "c": "cluster", "b": "backend"}


def sample_names(families: Iterable[tuple[str, str]]) -> set[str]:
    """The series names Prometheus stores for (family name, type) pairs."""
    names: set[str] = set()
    for name, kind in families:
        if kind == "counter":
            names.add(name + "_total")
        elif kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def dataplane_names() -> set[str]:
    """Every family the proxy can export: each row of its table in each scope it allows, and
    the families main keeps about itself."""
    families = []
    for key, row in prometheus._TABLE.items():
        for letter in row[4]:
            found = prometheus.family_of(SCOPES[letter], key)
            assert found is not None
            families.append((found[0].name, found[0].kind))
    families += [(m.name, m.type) for m in WorkersCollector(MainFigures()).collect()]
    return sample_names(families)


def controller_names() -> set[str]:
    text = ControllerMetrics().exposition().decode()
    return sample_names((f.name, f.type) for f in text_string_to_metric_families(text))


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["pysozu.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_has_a_sane_shape(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert expr.count("{") == expr.count("}"), expr
    # No two panels overlap on the grid.
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_queried_metric_is_exported_by_our_code(path: Path) -> None:
    exported = dataplane_names() | controller_names()
    used = {name for expr in queries(load(path)) for name in METRIC.findall(expr)}
    assert used, "the dashboard queries nothing"
    assert used - exported == set()
    # Both halves are plotted: the proxy's traffic and the controller's loop.
    assert any(n.startswith("pysozu_ingress_") for n in used)
    assert any(n in dataplane_names() for n in used)


def test_the_exporter_names_are_really_read_from_the_code() -> None:
    """A guard on the guard: known names of each exporter are in the sets, typos are not."""
    assert "pysozu_http_requests_total" in dataplane_names()
    assert "pysozu_cluster_request_duration_seconds_bucket" in dataplane_names()
    assert "pysozu_workers_alive" in dataplane_names()
    assert "pysozu_ingress_reconciles_total" in controller_names()
    assert "pysozu_ingress_config_push_duration_seconds_bucket" in controller_names()
    assert "pysozu_http_request_total" not in dataplane_names()


def test_no_dashboard_configmap_by_default(k8s_tools: None) -> None:
    objects = render()
    assert not [
        o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboards")
    ]


def test_the_configmap_carries_each_dashboard_and_the_sidecar_label(k8s_tools: None) -> None:
    objects = render(
        set_values=[
            "metrics.dashboards.enabled=true",
            "metrics.dashboards.namespace=monitoring",
            "metrics.dashboards.labels.grafana_dashboard=yes",
        ]
    )
    (configmap,) = [
        o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboards")
    ]
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "yes"
    assert sorted(configmap["data"]) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert json.loads(configmap["data"][path.name]) == load(path)
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(configmap, version, strict=True)
    output = run_tool("helm", "lint", "--strict", str(CHART), *IMAGE_VALUES,
                      "--set", "metrics.dashboards.enabled=true")  # fmt: skip
    assert "0 chart(s) failed" in output
