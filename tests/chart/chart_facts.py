"""Reading the facts a rendered chart states: effective values, controller flags, the proxy's
configuration, ports. Shared by the chart tests."""

from __future__ import annotations

import tomllib
from typing import Any

import yaml
from chart_tooling import CHART, container, one


def scenario_values(name: str) -> dict[str, Any]:
    """The effective values of a scenario: values.yaml overlaid with its ci file."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    if name != "default":
        _merge(values, yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()))
    return values


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def controller_flags(spec: dict[str, Any]) -> dict[str, list[str]]:
    """pysozu-ingress's `--flag=value` arguments, flag -> values (repeatable flags)."""
    args = container(spec, "pysozu-ingress")["args"]
    assert args[0] == "pysozu-ingress"
    flags: dict[str, list[str]] = {}
    for arg in args[1:]:
        flag, _, value = arg.partition("=")
        flags.setdefault(flag, []).append(value)
    return flags


def proxy_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads(one(objects, "ConfigMap")["data"]["config.toml"])
    return config


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def container_ports(spec: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {port["name"]: port for port in container(spec, name)["ports"]}
