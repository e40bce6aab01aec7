"""Shared facts and helpers of the chart and manifest tests: paths, the helm and kubectl
binaries from scripts/install-k8s-tools, rendering, and loading YAML documents."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pysozu"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Rendering scenarios: the default values, then each charts/pysozu/ci/*-values.yaml.
SCENARIOS = ["default", *(path.name.removesuffix("-values.yaml") for path in CI_VALUES)]
DEPLOY = REPO / "deploy"
TOOLS_BIN = REPO / ".tools" / "bin"
INSTALL_SCRIPT = REPO / "scripts" / "install-k8s-tools"

# Kubernetes versions to validate against: the oldest the chart supports (Chart.yaml
# kubeVersion) and the newest schema set kubernetes-validate bundles.
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]

# How `deploy/` relates to the chart: the default values, this release name and namespace.
RELEASE = "pysozu"
NAMESPACE = "pysozu"

# The chart has no default image (none is published): every rendering here names this one,
# as a user names the registry they pushed to. example.com never resolves to a registry.
IMAGE_REPOSITORY = "registry.example.com/pysozu"
IMAGE_VALUES = ["--set", f"image.repository={IMAGE_REPOSITORY}"]

# Labels and annotations that only say "Helm made this"; deploy/ leaves them out.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
HELM_ONLY_ANNOTATIONS = ("checksum/config",)


class ToolError(Exception):
    """A tool ran and failed; the message carries its output."""


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def install_tools() -> str | None:
    """Install helm and kubectl into .tools/bin; return None on success, else the reason."""
    try:
        result = subprocess.run(
            [sys.executable, str(INSTALL_SCRIPT)],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{INSTALL_SCRIPT.name} could not run: {error}"
    if result.returncode != 0:
        return f"{INSTALL_SCRIPT.name} failed: {result.stderr.strip() or result.stdout.strip()}"
    return None


def run_tool(tool: str, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    """Run helm or kubectl from .tools/bin; return stdout or raise ToolError."""
    # An empty KUBECONFIG keeps the developer's real clusters out of reach.
    env = {**os.environ, "KUBECONFIG": os.devnull, "HELM_CACHE_HOME": "/tmp/pysozu-helm-cache"}
    result = subprocess.run(
        [str(TOOLS_BIN / tool), *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ToolError(f"{tool} {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def helm_template(
    values_files: Iterable[Path] = (),
    set_values: Iterable[str] = (),
    kube_version: str = "",
    release: str = RELEASE,
) -> str:
    args = ["template", release, str(CHART), "--namespace", NAMESPACE, *IMAGE_VALUES]
    for values_file in values_files:
        args += ["--values", str(values_file)]
    for assignment in set_values:
        args += ["--set", assignment]
    if kube_version:
        args += ["--kube-version", kube_version]
    return run_tool("helm", *args)


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a stream, in order."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(
    values_files: Iterable[Path] = (), set_values: Iterable[str] = ()
) -> list[dict[str, Any]]:
    return load_documents(helm_template(values_files, set_values))


def deploy_manifest_files() -> list[Path]:
    """The files `kubectl apply -f deploy/` reads (it skips kustomization.yaml: see README)."""
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def example_manifest_files() -> list[Path]:
    return sorted((DEPLOY / "examples").glob("*.yaml"))


def deploy_objects(files: Iterable[Path] | None = None) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in deploy_manifest_files() if files is None else files:
        objects += load_documents(path.read_text())
    return objects


def without_helm_marks(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a rendered object minus the Helm-only labels and annotations."""
    copy = deepcopy(obj)
    for metadata in _all_metadata(copy):
        for key in HELM_ONLY_LABELS:
            metadata.get("labels", {}).pop(key, None)
        for key in HELM_ONLY_ANNOTATIONS:
            metadata.get("annotations", {}).pop(key, None)
        for field in ("labels", "annotations"):
            if field in metadata and not metadata[field]:
                del metadata[field]
    return copy


def _all_metadata(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield obj.setdefault("metadata", {})
    template = obj.get("spec", {}).get("template")
    if isinstance(template, dict) and "metadata" in template:
        yield template["metadata"]


def key_of(obj: dict[str, Any]) -> tuple[str, str, str]:
    metadata = obj.get("metadata", {})
    return obj["kind"], metadata.get("namespace", ""), metadata["name"]


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_spec(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    workloads = [o for o in objects if o["kind"] in ("Deployment", "DaemonSet")]
    assert len(workloads) == 1, f"expected one workload, found {len(workloads)}"
    spec: dict[str, Any] = workloads[0]["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [c for c in spec["containers"] if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name}"
    return matches[0]
