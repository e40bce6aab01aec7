"""What the READMEs tell a user to type renders, and renders valid Kubernetes: each `key=value`
row of the chart README's table of common choices, and each `helm install` command of the
READMEs (with REGISTRY, their placeholder, replaced by an example registry)."""

from __future__ import annotations

import re
import shlex
from typing import Any

import kubernetes_validate
import pytest
from chart_tooling import CHART, KUBE_VERSIONS, REPO, ToolError, helm_template, load_documents

pytestmark = pytest.mark.timeout(300)

CHART_README = CHART / "README.md"
CUSTOM_RESOURCE_KINDS = {
    "ServiceMonitor",
    "PrometheusRule",
    "Issuer",
    "Certificate",
}  # no bundled schema


def table_examples() -> list[list[str]]:
    """The `key=value` assignments of each row of the chart README's table."""
    rows = []
    for line in CHART_README.read_text().splitlines():
        if line.startswith("|") and "=" in line:
            assignments = re.findall(r"`([\w.\[\]]+=[^`\s]+)`", line.split("|")[2])
            if assignments:
                rows.append(assignments)
    return rows


def helm_install_commands() -> list[list[str]]:
    """Every `helm install` command of README.md and the chart's README, as words."""
    commands = []
    for path in (REPO / "README.md", CHART_README):
        text = path.read_text().replace("\\\n", " ")  # shell line continuations
        inline = re.findall(r"`(helm install [^`]*)`", text)  # may wrap across lines
        blocks = re.findall(r"^(helm install .*)$", text, re.MULTILINE)
        for found in (*inline, *blocks):
            words = shlex.split(" ".join(found.split()), comments=True)
            commands.append([w.replace("REGISTRY/", "registry.example.com/") for w in words])
    return commands


def validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] in CUSTOM_RESOURCE_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                pytest.fail(f"{obj['kind']} @ {version}: {path}: {error.message}")


def test_the_readmes_have_examples() -> None:
    assert len(table_examples()) >= 8
    assert len(helm_install_commands()) >= 2


@pytest.mark.parametrize("assignments", table_examples(), ids=" ".join)
def test_each_documented_choice_renders_valid_kubernetes(
    k8s_tools: None, assignments: list[str]
) -> None:
    validate(load_documents(helm_template(set_values=assignments)))


@pytest.mark.parametrize("command", helm_install_commands(), ids=" ".join)
def test_each_documented_helm_install_renders_valid_kubernetes(
    k8s_tools: None, command: list[str]
) -> None:
    assert command[:4] == ["helm", "install", "pysozu", "charts/pysozu"], command
    options = command[4:]
    set_values = [options[i + 1] for i, word in enumerate(options) if word == "--set"]
    assert any(v.startswith("image.repository=") for v in set_values), "name the image"
    validate(load_documents(helm_template(set_values=set_values)))


def test_the_readmes_commands_fail_without_an_image(k8s_tools: None) -> None:
    """The chart has no default image: it says what to do instead of pulling nothing."""
    with pytest.raises(ToolError, match="docker build -t REGISTRY/pysozu"):
        helm_template(set_values=["image.repository="])
