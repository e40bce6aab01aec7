"""deploy/: the plain manifests say what the chart says, are valid Kubernetes, install with
`-f` and `-k`; the examples, the container config and the systemd unit share its facts."""

from __future__ import annotations

import configparser
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_tooling import (
    CHART,
    DEPLOY,
    IMAGE_REPOSITORY,
    KUBE_VERSIONS,
    NAMESPACE,
    REPO,
    by_kind,
    deploy_manifest_files,
    deploy_objects,
    example_manifest_files,
    key_of,
    load_documents,
    one,
    project_version,
    run_tool,
)
from sync_deploy import DOCKER_CONFIG, expected_files

pytestmark = pytest.mark.timeout(120)

CHART_VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())


def test_deploy_is_the_chart_with_default_values(k8s_tools: None) -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in expected_files().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"out of date; run .venv/bin/python tests/chart/sync_deploy.py: {stale}"


@pytest.mark.parametrize(
    "path",
    [*deploy_manifest_files(), *example_manifest_files()],
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_manifest_is_valid_kubernetes(path: Any) -> None:
    objects = load_documents(path.read_text())
    assert objects
    for obj in objects:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(p) for p in error.path)
                pytest.fail(
                    f"{obj['kind']} {obj['metadata']['name']} @ {version}: {where}: {error.message}"
                )


def test_everything_lives_in_the_pysozu_namespace() -> None:
    objects = deploy_objects()
    assert objects[0] == one(objects, "Namespace")  # applied first by `kubectl apply -f`
    assert objects[0]["metadata"]["name"] == NAMESPACE
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        assert namespace == (None if obj["kind"] in cluster_scoped else NAMESPACE), key_of(obj)


def test_versions_are_the_project_version() -> None:
    version = project_version()
    for obj in deploy_objects():
        labels = obj["metadata"].get("labels", {})
        if "app.kubernetes.io/version" in labels:
            assert labels["app.kubernetes.io/version"] == version, key_of(obj)
    spec = one(deploy_objects(), "Deployment")["spec"]["template"]["spec"]
    assert {c["image"] for c in spec["containers"]} == {f"{IMAGE_REPOSITORY}:{version}"}


def test_kustomization_installs_the_same_objects(k8s_tools: None) -> None:
    kustomization = yaml.safe_load((DEPLOY / "Kustomization").read_text())
    assert kustomization["resources"] == [p.name for p in deploy_manifest_files()]
    # A kustomization.yaml would break `kubectl apply -f deploy/` (see the file's comment).
    assert not list(DEPLOY.glob("kustomization.y*ml"))
    built = load_documents(run_tool("kubectl", "kustomize", str(DEPLOY)))
    assert sorted(map(key_of, built)) == sorted(map(key_of, deploy_objects()))


def test_container_config_is_the_configmap() -> None:
    configmap = one(deploy_objects(), "ConfigMap")["data"]["config.toml"]
    docker_config = tomllib.loads(DOCKER_CONFIG.read_text())
    assert docker_config == tomllib.loads(configmap)
    assert docker_config["command_socket"] == "/run/pysozu/pysozu.sock"
    addresses = {
        listener["protocol"]: listener["address"] for listener in docker_config["listeners"]
    }
    ports = CHART_VALUES["ports"]
    assert addresses == {"http": f"0.0.0.0:{ports['http']}", "https": f"0.0.0.0:{ports['https']}"}
    assert docker_config["prometheus"]["address"] == f"0.0.0.0:{ports['metrics']}"


def test_examples_route_through_pysozu_to_the_example_service() -> None:
    ingress_class = one(deploy_objects(), "IngressClass")["metadata"]["name"]
    documents = [
        doc for path in example_manifest_files() for doc in load_documents(path.read_text())
    ]
    services = {s["metadata"]["name"]: s for s in by_kind(documents, "Service")}
    ingresses = by_kind(documents, "Ingress")
    assert len(ingresses) == 2
    for ingress in ingresses:
        assert ingress["spec"]["ingressClassName"] == ingress_class
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        for tls in ingress["spec"].get("tls", []):
            assert set(tls["hosts"]) <= hosts
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = services[backend["name"]]
                assert service["metadata"]["namespace"] == ingress["metadata"]["namespace"]
                port = backend["port"]
                assert any(
                    port.get("number") == p["port"] or port.get("name") == p["name"]
                    for p in service["spec"]["ports"]
                ), port


def test_systemd_unit_runs_checks_reloads_and_drains() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(DEPLOY / "systemd" / "pysozu.service")
    service = unit["Service"]
    config = "-c /etc/pysozu/config.toml"
    assert service["Type"] == "notify"
    assert service["ExecStartPre"].endswith(f"pysozu {config} config check")
    assert service["ExecStart"].endswith(f"pysozu start {config}")
    assert service["ExecReload"].endswith(f"pysozu {config} reload")
    assert service["LimitNOFILE"] == "65536"
    assert service["KillSignal"] == "SIGTERM"
    # The same drain as in Kubernetes, and systemd waits longer than it before killing.
    drain = CHART_VALUES["drain"]["timeoutSeconds"]
    assert f"drain gets\n# {drain} s" in (DEPLOY / "systemd" / "pysozu.service").read_text()
    assert int(service["TimeoutStopSec"]) > drain
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_changelog_describes_the_unreleased_release() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog")
    assert "Keep a Changelog" in changelog
    unreleased = changelog.split("## [Unreleased]", 1)[1].split("\n## [", 1)[0]
    for topic in ("command protocol", "worker", "CLI", "HTTP", "ingress controller", "Helm chart"):
        assert topic in unreleased, topic
