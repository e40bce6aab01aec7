"""The Helm chart as Helm and Kubernetes see it: lint, render every scenario, validate every
object against the Kubernetes schemas, values.schema.json and the documentation of values."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_tooling import (
    CHART,
    CI_VALUES,
    IMAGE_VALUES,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    ToolError,
    helm_template,
    project_version,
    run_tool,
)

pytestmark = pytest.mark.timeout(300)

CUSTOM_RESOURCE_KINDS = {
    "ServiceMonitor",
    "Issuer",
    "Certificate",
}  # no bundled schema: test_chart_scenarios checks it


@pytest.mark.parametrize(
    "values_file", [None, *CI_VALUES], ids=lambda p: p.name if p else "default"
)
def test_helm_lint_strict(k8s_tools: None, values_file: Any) -> None:
    args = ["lint", "--strict", str(CHART), *IMAGE_VALUES] + (
        ["--values", str(values_file)] if values_file else []
    )
    output = run_tool("helm", *args)
    assert "0 chart(s) failed" in output


def test_ci_scenarios_cover_daemonset_metrics_custom_class_and_extras() -> None:
    assert set(SCENARIOS) == {
        "default",
        "daemonset-hostnetwork",
        "metrics-servicemonitor",
        "custom-class",
        "extras",
        "webhook-certmanager",
        "l4-listeners",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_valid_kubernetes(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objects = rendered_scenarios[scenario]
    assert objects, "the chart rendered nothing"
    for obj in objects:
        if obj["kind"] in CUSTOM_RESOURCE_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                pytest.fail(
                    f"{obj['kind']} {obj['metadata']['name']} @ {version}: {path}: {error.message}"
                )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_renders_for_the_oldest_supported_kubernetes(k8s_tools: None, scenario: str) -> None:
    values = [] if scenario == "default" else [CHART / "ci" / f"{scenario}-values.yaml"]
    assert helm_template(values, kube_version=KUBE_VERSIONS[0])


def test_chart_refuses_kubernetes_older_than_supported(k8s_tools: None) -> None:
    with pytest.raises(ToolError, match="kubeVersion"):
        helm_template(kube_version="1.28.0")


def test_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project_version()


@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        ("kind=StatefulSet", "kind"),
        ("replicaCount=0", "replicaCount"),
        ("ports.http=70000", "http"),
        ("config.workerCount=0", "workerCount"),
        ("config.buffers.size=4096", "size"),
        ("config.logLevel=verbose", "logLevel"),
        ("service.type=ExternalName", "type"),
        ("ingressClass.controllerName=no-slash", "controllerName"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
        ("replicaCont=3", "replicaCont"),
        ("metrics.serviceMonitor.interval=often", "interval"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("defaultTLSCertificate.secretName=Not_A_Secret", "secretName"),
        ("defaultTLSCertificate.secretname=x", "secretname"),
        ("proxy.extraArgs[0]=value-without-dash", "extraArgs"),
        ("extraContainers[0].name=sidecar", "image"),
        ("controller.extraVolumeMounts[0].name=x", "mountPath"),
        ("controller.electionID=Not_A_Lease", "electionID"),
    ],
)
def test_schema_rejects_bad_values(k8s_tools: None, assignment: str, complaint: str) -> None:
    with pytest.raises(ToolError, match="schema") as error:
        helm_template(set_values=[assignment])
    assert complaint in str(error.value)


@pytest.mark.parametrize(
    ("assignments", "complaint"),
    [
        (["terminationGracePeriodSeconds=35"], "terminationGracePeriodSeconds"),
        (["hostNetwork=true", "hostPort.enabled=true"], "exclusive"),
        (["kind=DaemonSet", "autoscaling.enabled=true"], "autoscaling"),
        (["metrics.enabled=false", "metrics.serviceMonitor.enabled=true"], "serviceMonitor"),
        (["image.repository="], "image.repository is required"),
        (["hostNetwork=true", "ports.http=80"], "cannot bind ports below 1024"),
        (["hostNetwork=true", "ports.https=443"], "hostPort.enabled=true"),
    ],
)
def test_render_rejects_inconsistent_values(
    k8s_tools: None, assignments: list[str], complaint: str
) -> None:
    with pytest.raises(ToolError, match=complaint):
        helm_template(set_values=assignments)


def test_every_value_is_documented() -> None:
    """Each leaf of values.yaml has a `# --` comment, on itself or on an ancestor block."""
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    comment_block: list[str] = []
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comment_block.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if not match:
            comment_block = [] if not stripped else comment_block
            continue
        indent, key, rest = len(match[1]), match[2], match[3].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = any(c.startswith("# --") for c in comment_block) or any(d for _, d in stack)
        comment_block = []
        is_parent = rest == "" and number < len(lines) and _indent(lines[number]) > indent
        if is_parent:
            stack.append((indent, documented))
        elif not documented:
            undocumented.append(f"line {number}: {key}")
    assert not undocumented


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip()) if line.strip() else -1


def test_notes_tell_what_to_do_next(k8s_tools: None) -> None:
    for values, expected in [
        (
            [],
            [
                "rollout status deployment/pysozu",
                "get service pysozu --watch",
                "ingressClassName: pysozu",
            ],
        ),
        (
            [CHART / "ci" / "daemonset-hostnetwork-values.yaml"],
            ["daemonset/pysozu", "node network"],
        ),
        ([CHART / "ci" / "custom-class-values.yaml"], ["ingressClassName: edge", "nodePort"]),
    ]:
        args = ["install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE]
        args += IMAGE_VALUES
        for path in values:
            args += ["--values", str(path)]
        notes = run_tool("helm", *args).split("NOTES:", 1)[1]
        for text in expected:
            assert text in notes, (values, text)
