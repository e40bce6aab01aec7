"""`kubectl apply` of the rendered chart and of deploy/ against a kmock API stand-in: every
object is accepted, stored and read back unchanged (kmock checks no schemas; the validation
tests do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_apiserver import ApiServerStandIn, running_apiserver
from chart_tooling import (
    CHART,
    DEPLOY,
    SCENARIOS,
    deploy_objects,
    example_manifest_files,
    helm_template,
    key_of,
    load_documents,
    run_tool,
)

pytestmark = [
    pytest.mark.timeout(180),
    # kmock 0.8 loads its bundled resources with a deprecated importlib.resources call.
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]

# The parts of an object kubectl sends as-is; the API stand-in must give them back.
CONTENT_FIELDS = ("spec", "data", "rules", "roleRef", "subjects")


@pytest.fixture
def apiserver(k8s_tools: None) -> Iterator[tuple[ApiServerStandIn, str]]:
    with running_apiserver() as served:
        yield served


def kubectl(server: str, *args: str, stdin: str | None = None) -> str:
    return run_tool("kubectl", "--server", server, *args, stdin=stdin, timeout=120)


def assert_stored(server: str, manifests: str, expected: list[dict[str, Any]]) -> None:
    """Every expected object can be read back from the server with the same content."""
    listing = load_documents(kubectl(server, "get", "--output=yaml", "-f", "-", stdin=manifests))
    stored = {key_of(item): item for item in listing[0]["items"]}
    for obj in expected:
        key = key_of(obj)
        assert key in stored, f"{key} was not created"
        for field in CONTENT_FIELDS:
            assert stored[key].get(field) == obj.get(field), f"{key}: {field} differs"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_chart_applies_cleanly(
    apiserver: tuple[ApiServerStandIn, str], scenario: str
) -> None:
    _, server = apiserver
    values = [] if scenario == "default" else [CHART / "ci" / f"{scenario}-values.yaml"]
    manifests = helm_template(values)
    objects = load_documents(manifests)
    kubectl(server, "apply", "--validate=false", "-f", str(DEPLOY / "00-namespace.yaml"))
    output = kubectl(server, "apply", "--validate=false", "-f", "-", stdin=manifests)
    assert output.count(" created") == len(objects), output
    assert_stored(server, manifests, objects)


def test_deploy_directory_applies_with_f_then_k(apiserver: tuple[ApiServerStandIn, str]) -> None:
    _, server = apiserver
    objects = deploy_objects()
    output = kubectl(server, "apply", "--validate=false", "-f", str(DEPLOY))
    assert output.count(" created") == len(objects), output
    assert output.splitlines()[0].startswith("namespace/pysozu created"), output
    manifests = "".join(f"---\n{path.read_text()}" for path in sorted(DEPLOY.glob("*.yaml")))
    assert_stored(server, manifests, objects)
    # The kustomization installs the very same objects: applying it changes nothing.
    output = kubectl(server, "apply", "--validate=false", "-k", str(DEPLOY))
    assert " created" not in output and len(output.splitlines()) == len(objects), output


def test_examples_apply_after_deploy(apiserver: tuple[ApiServerStandIn, str]) -> None:
    _, server = apiserver
    kubectl(server, "apply", "--validate=false", "-f", str(DEPLOY))
    examples: list[Path] = example_manifest_files()
    output = kubectl(server, "apply", "--validate=false", "-f", str(DEPLOY / "examples"))
    documents = [doc for path in examples for doc in load_documents(path.read_text())]
    assert output.count(" created") == len(documents), output
    ingresses = load_documents(
        kubectl(server, "get", "ingress", "--namespace=pysozu-example", "--output=yaml")
    )[0]["items"]
    assert sorted(i["spec"]["ingressClassName"] for i in ingresses) == ["pysozu", "pysozu"]
