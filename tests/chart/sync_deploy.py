"""Regenerate the chart-derived files of deploy/ from `helm template` with default values.

deploy/ is what `kubectl apply -f deploy/` installs; it must say exactly what the chart
says with its defaults (release and namespace "pysozu"), minus the Helm-only labels.
test_chart_deploy.py fails when they drift apart; then run, from the repository root:

    .venv/bin/python tests/chart/sync_deploy.py

The Namespace, the kustomization, examples/ and systemd/ are written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart_tooling import (
    DEPLOY,
    install_tools,
    key_of,
    one,
    render,
    without_helm_marks,
)

# Output file of each chart-rendered kind; the numbers give `kubectl apply -f` its order.
FILE_OF_KIND = {
    "ServiceAccount": "01-rbac.yaml",
    "ClusterRole": "01-rbac.yaml",
    "ClusterRoleBinding": "01-rbac.yaml",
    "Role": "01-rbac.yaml",
    "RoleBinding": "01-rbac.yaml",
    "IngressClass": "02-ingressclass.yaml",
    "ConfigMap": "03-configmap.yaml",
    "Deployment": "04-deployment.yaml",
    "Service": "05-service.yaml",
    "PodDisruptionBudget": "06-poddisruptionbudget.yaml",
}
KIND_ORDER = list(dict.fromkeys(FILE_OF_KIND))
HEADER = (
    "# Generated from charts/pysozu with its default values by tests/chart/sync_deploy.py;\n"
    "# change the chart, then regenerate. tests/chart/test_chart_deploy.py checks they agree.\n"
)
DOCKER_CONFIG = DEPLOY / "pysozu.toml"
DOCKER_CONFIG_HEADER = (
    "# Default configuration baked into the container image (/etc/pysozu/config.toml).\n"
    "# The same file as deploy/03-configmap.yaml; mount your own over it to change it.\n"
)


class _LiteralDumper(yaml.SafeDumper):  # type: ignore[misc]  # untyped PyYAML
    """Dumps multi-line strings (the config file) as readable literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_LiteralDumper.add_representer(str, _represent_str)


def expected_files() -> dict[Path, str]:
    """Every chart-derived file of deploy/ and its expected text."""
    objects = sorted(
        (without_helm_marks(obj) for obj in render()),
        key=lambda obj: (KIND_ORDER.index(obj["kind"]), key_of(obj)),
    )
    documents: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        documents.setdefault(FILE_OF_KIND[obj["kind"]], []).append(obj)
    files = {
        DEPLOY / name: HEADER + "".join(f"---\n{_dump(doc)}" for doc in docs)
        for name, docs in documents.items()
    }
    config_text: str = one(objects, "ConfigMap")["data"]["config.toml"]
    files[DOCKER_CONFIG] = DOCKER_CONFIG_HEADER + config_text.split("\n", 1)[1]
    return files


def _dump(obj: dict[str, Any]) -> str:
    text: str = yaml.dump(obj, Dumper=_LiteralDumper, sort_keys=False, width=100)
    return text


def main() -> int:
    if (reason := install_tools()) is not None:
        print(reason, file=sys.stderr)
        return 1
    for path, text in expected_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
