"""The rendered pod speaks the programs' language: every command line it runs parses with
pysozu's and pysozu-ingress's own parsers, and every configuration it mounts loads with
pysozu's own configuration reader, in every scenario."""

from __future__ import annotations

import functools
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trustme
from chart_facts import scenario_values
from chart_tooling import SCENARIOS, container, one, pod_spec
from ingress_operator import cli as ingress_cli

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.config import parse_config
from dataplane.command.messages import HttpsListenerConfig

pytestmark = pytest.mark.timeout(120)


def proxy_command_lines(spec: dict[str, Any]) -> list[list[str]]:
    """Every `pysozu ...` command the proxy container runs: start and preStop (its probes
    are HTTP GETs)."""
    proxy = container(spec, "pysozu")
    commands = [proxy["args"]]
    shell_line = proxy["lifecycle"]["preStop"]["exec"]["command"][-1]
    commands.append(shlex.split(shell_line.split("; exec ", 1)[1]))
    return commands


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_proxy_commands_parse_with_the_pysozu_cli(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    parser = build_parser()
    verbs = []
    for command in proxy_command_lines(pod_spec(rendered_scenarios[scenario])):
        assert command[0] == "pysozu"
        parsed = parser.parse_args(command[1:])
        assert parsed.config == "/etc/pysozu/config.toml", command
        verbs.append(command[-1] if command[1] != "start" else "start")
    assert verbs == ["start", "shutdown"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_controller_arguments_become_the_intended_settings(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objects = rendered_scenarios[scenario]
    values = scenario_values(scenario)
    args = container(pod_spec(objects), "pysozu-ingress")["args"]
    settings = ingress_cli.settings_from(ingress_cli.parser().parse_args(args[1:]))
    assert settings.command_socket == Path(parse_config(config_text(objects)).command_socket)
    assert settings.render.controller_name == values["ingressClass"]["controllerName"]
    assert settings.render.ingress_class == values["ingressClass"]["name"]
    assert settings.render.watch_ingress_without_class is values["watchIngressWithoutClass"]
    assert settings.render.nginx_annotations is values["nginxAnnotations"]
    assert settings.namespaces == tuple(values["watchNamespaces"])
    ports = values["ports"]
    assert settings.render.http_address == SocketAddress.parse(f"0.0.0.0:{ports['http']}")
    assert settings.render.https_address == SocketAddress.parse(f"0.0.0.0:{ports['https']}")
    assert settings.health_address == SocketAddress.parse(f"0.0.0.0:{ports['health']}")
    if values["publishAddress"]:
        assert (settings.publish_address, settings.publish_service) == (
            values["publishAddress"],
            None,
        )
    else:
        assert settings.publish_service == ("pysozu", "pysozu")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_config_loads_with_pysozu(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    values = scenario_values(scenario)["config"]
    config = parse_config(config_text(rendered_scenarios[scenario]), source="config.toml")
    assert config.warnings == []
    assert config.command_socket == "/run/pysozu/pysozu.sock"
    assert config.worker_count == values["workerCount"]
    assert config.worker_automatic_restart is values["workerAutomaticRestart"]
    assert config.worker_timeout == values["workerTimeout"]
    assert config.log_level == values["logLevel"]
    assert config.max_connections == values["maxConnections"]
    timeouts = values["timeouts"]
    assert (config.front_timeout, config.back_timeout) == (timeouts["front"], timeouts["back"])
    assert (config.connect_timeout, config.request_timeout) == (
        timeouts["connect"],
        timeouts["request"],
    )
    buffers = values["buffers"]
    assert (config.buffer_size, config.min_buffers, config.max_buffers) == (
        buffers["size"],
        buffers["min"],
        buffers["max"],
    )
    ports = scenario_values(scenario)["ports"]
    assert config.prometheus_address == f"0.0.0.0:{ports['metrics']}"
    assert len(config.listeners) == 2 + len(scenario_values(scenario)["extraListeners"])
    https = next(li for li in config.listeners if isinstance(li, HttpsListenerConfig))
    has_default = bool(scenario_values(scenario)["defaultTLSCertificate"]["secretName"])
    assert (https.certificate is not None, https.key is not None) == (has_default, has_default)


def config_text(objects: list[dict[str, Any]]) -> str:
    """The ConfigMap's config.toml, with the default certificate's Secret "mounted" (a test
    certificate in a temporary directory, as the kubelet would mount the Secret's files)."""
    text: str = one(objects, "ConfigMap")["data"]["config.toml"]
    if TLS_DIR in text:
        text = text.replace(TLS_DIR, str(_mounted_default_certificate()))
    return text


TLS_DIR = "/etc/pysozu-tls"


@functools.cache
def _mounted_default_certificate() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="pysozu-default-tls-"))
    certificate = trustme.CA().issue_cert("default.example")
    certificate.private_key_pem.write_to_path(str(directory / "tls.key"))
    certificate.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    return directory
