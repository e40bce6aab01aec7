"""The chart's PrometheusRule (metrics.prometheusRule, off by default): its structure, every
metric it queries exported by our code, and with promtool (scripts/test puts Debian's promtool
in .tools/bin) `check rules` plus `test rules`: each alert fires on the series that mean
trouble and stays silent on healthy ones."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_tooling import NAMESPACE, RELEASE, TOOLS_BIN, by_kind, one, render
from test_chart_dashboards import METRIC, controller_names, dataplane_names

pytestmark = pytest.mark.timeout(300)

ON = ["metrics.prometheusRule.enabled=true"]
ALERTS = {
    "PysozuIngressNoLeader",
    "PysozuIngressSyncFailing",
    "PysozuCertificateExpiring",
    "PysozuHigh5xxRatio",
}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
JOB = f'job="{RELEASE}-metrics"'


def groups(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rule = one(objects, "PrometheusRule")
    found: list[dict[str, Any]] = rule["spec"]["groups"]
    return found


def rules(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups(objects) for r in g["rules"]}


def test_off_by_default(k8s_tools: None) -> None:
    assert not by_kind(render(), "PrometheusRule")


def test_the_rule_has_the_prometheus_operator_shape(k8s_tools: None) -> None:
    """What the PrometheusRule CRD and Prometheus's rule-file loader require, checked here
    without either: names, one alert per rule, durations, string labels and annotations."""
    objects = render(set_values=ON)
    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert set(rule["spec"]) == {"groups"}
    (group,) = groups(objects)
    assert set(group) == {"name", "rules"} and group["name"]
    found = rules(objects)
    assert set(found) == ALERTS
    for name, entry in found.items():
        assert set(entry) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert isinstance(entry["expr"], str) and DURATION.match(entry["for"]), name
        assert entry["labels"]["severity"] in ("warning", "critical"), name
        assert entry["annotations"]["summary"] and entry["annotations"]["description"], name
        assert all(isinstance(v, str) for v in [*entry["labels"].values(),
                                                 *entry["annotations"].values()])  # fmt: skip
        expr = entry["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), name
        assert JOB in expr, name  # only this release's series


def test_every_queried_metric_is_exported_by_our_code(k8s_tools: None) -> None:
    used = {n for r in rules(render(set_values=ON)).values() for n in METRIC.findall(r["expr"])}
    assert used - (dataplane_names() | controller_names()) == set()
    assert "pysozu_ingress_certificate_expiry_timestamp_seconds" in used


def test_values_reach_the_rules(k8s_tools: None, tmp_path: Path) -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"release": "kube-prometheus"},
            "selector": 'namespace="edge"',
            "certificateExpiryDays": 21,
            "errorRatio": 0.1,  # a float: --set would pass it as a string
            "errorRatioFor": "2m",
        }
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"metrics": values}))
    objects = render([path])
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    found = rules(objects)
    assert all('namespace="edge"' in r["expr"] and JOB not in r["expr"] for r in found.values())
    assert "< 21 * 86400" in found["PysozuCertificateExpiring"]["expr"]
    assert found["PysozuHigh5xxRatio"]["expr"].endswith("> 0.1")
    assert found["PysozuHigh5xxRatio"]["for"] == "2m"
    assert "10%" in found["PysozuHigh5xxRatio"]["annotations"]["summary"]


# -- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> str:
    found = TOOLS_BIN / "promtool"
    if found.exists():
        return str(found)
    on_path = shutil.which("promtool")
    if on_path is None:
        pytest.skip("promtool unavailable: scripts/test installs it (Debian's prometheus)")
    return on_path


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ",".join(
        [JOB, 'instance="10.0.0.1:10254"', *(f'{k}="{v}"' for k, v in labels.items())]
    )
    return {"series": f"{name}{{{matchers}}}", "values": values}


def _expected(rule: dict[str, Any], **labels: str) -> dict[str, Any]:
    """The alert promtool must see: the rule's labels plus `labels`, annotations templated."""
    annotations = {
        key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
        for key, text in rule["annotations"].items()
    }
    return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}


def test_promtool_checks_the_rules_and_each_alert_fires_when_it_should(
    k8s_tools: None, promtool: str, tmp_path: Path
) -> None:
    objects = render(set_values=ON)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": groups(objects)}))
    check = subprocess.run([promtool, "check", "rules", str(rules_file)],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout
    found = rules(objects)
    day = 86400
    expiry = "pysozu_ingress_certificate_expiry_timestamp_seconds"
    tests = [
        {   # no replica leads: fires after noLeaderFor; a leader: silent
            "interval": "1m",
            "input_series": [_series("pysozu_ingress_leader", "0x20")],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "PysozuIngressNoLeader", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "PysozuIngressNoLeader",
                 "exp_alerts": [_expected(found["PysozuIngressNoLeader"])]},
            ],
        },
        {   # no controller scraped at all: no leader either
            "interval": "1m",
            "input_series": [_series("up", "1x20")],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "PysozuIngressNoLeader",
                 "exp_alerts": [{"exp_labels": {**found["PysozuIngressNoLeader"]["labels"],
                                                "job": f"{RELEASE}-metrics"},
                                 "exp_annotations": _expected(found["PysozuIngressNoLeader"])[
                                     "exp_annotations"]}]},
            ],
        },
        {   # a leader: silent
            "interval": "1m",
            "input_series": [_series("pysozu_ingress_leader", "1x20")],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "PysozuIngressNoLeader", "exp_alerts": []}
            ],
        },
        {   # rounds fail from the start and the last sync stays at t=0: fires
            "interval": "1m",
            "input_series": [
                _series("pysozu_ingress_reconciles_total", "0+1x40", result="failed"),
                _series("pysozu_ingress_last_successful_sync_timestamp_seconds", "0x40"),
            ],
            "alert_rule_test": [
                {"eval_time": "12m", "alertname": "PysozuIngressSyncFailing", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "PysozuIngressSyncFailing",
                 "exp_alerts": [_expected(found["PysozuIngressSyncFailing"],
                                          instance="10.0.0.1:10254")]},
            ],
        },
        {   # one failed round, but syncs keep succeeding (the timestamp follows the clock)
            "interval": "1m",
            "input_series": [
                _series("pysozu_ingress_reconciles_total", "0+1x40", result="failed"),
                _series("pysozu_ingress_last_successful_sync_timestamp_seconds", "0+60x40"),
            ],
            "alert_rule_test": [
                {"eval_time": "30m", "alertname": "PysozuIngressSyncFailing", "exp_alerts": []}
            ],
        },
        {   # one certificate expires in 10 days, another in 60
            "interval": "1m",
            "input_series": [
                _series(expiry, f"{10 * day}x150", namespace="shop", secret="soon-tls"),
                _series(expiry, f"{60 * day}x150", namespace="shop", secret="later-tls"),
            ],
            "alert_rule_test": [
                {"eval_time": "2h", "alertname": "PysozuCertificateExpiring",
                 "exp_alerts": [_expected(found["PysozuCertificateExpiring"],
                                          namespace="shop", secret="soon-tls")]},
            ],
        },
        {   # 10% of the answers are 5xx: fires; 1%: silent
            "interval": "1m",
            "input_series": [
                _series("pysozu_http_requests_total", "0+90x30", status_class="2xx"),
                _series("pysozu_http_requests_total", "0+10x30", status_class="5xx"),
            ],
            "alert_rule_test": [
                {"eval_time": "25m", "alertname": "PysozuHigh5xxRatio",
                 "exp_alerts": [_expected(found["PysozuHigh5xxRatio"])]},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                _series("pysozu_http_requests_total", "0+99x30", status_class="2xx"),
                _series("pysozu_http_requests_total", "0+1x30", status_class="5xx"),
            ],
            "alert_rule_test": [
                {"eval_time": "25m", "alertname": "PysozuHigh5xxRatio", "exp_alerts": []}
            ],
        },
    ]  # fmt: skip
    tests_file = tmp_path / "tests.yaml"
    tests_file.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", str(tests_file)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
