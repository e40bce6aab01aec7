"""TLS passthrough frontends (pysozu extension, docs/tls-passthrough.md): the TOML key, the
CLI flag, the state's checks, the state file, and the worker's hostname table."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dataplane.cli.output import show_frontends
from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.config import parse_config
from dataplane.command.messages import (
    HttpsListenerConfig,
    PathRule,
    PathRuleKind,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.responses import ListedFrontends, Response, ResponseContent
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError, check_http_frontend
from dataplane.command.statefile import read_state_file, write_state_file
from dataplane.proxy.tls.passthrough import PassthroughRoutes

pytestmark = pytest.mark.timeout(10)

ADDRESS = SocketAddress.parse("127.0.0.1:8443")

TOML = """
[[listeners]]
protocol = "https"
address = "127.0.0.1:8443"

[clusters.argocd]
protocol = "http"
frontends = [{ address = "127.0.0.1:8443", hostname = "argocd.example", passthrough = true }]
backends = [{ address = "127.0.0.1:9443" }]
"""


def front(**fields: Any) -> RequestHttpFrontend:
    base: dict[str, Any] = dict(
        cluster_id="argocd", address=ADDRESS, hostname="argocd.example", passthrough=True
    )
    return RequestHttpFrontend(**{**base, **fields})


def test_the_toml_key_makes_a_passthrough_https_frontend_without_a_certificate() -> None:
    config = parse_config(TOML)
    requests = list(config.generate_requests())
    [added] = [r.body for r in requests if r.verb == "add_https_frontend"]
    assert added.passthrough is True
    assert added.hostname == "argocd.example"
    assert not [r for r in requests if r.verb == "add_certificate"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('path = "/api"', "no path rule"),
        ('redirect = "PERMANENT"', "redirect"),
        ('headers = [{ position = "REQUEST", key = "x", value = "y" }]', "headers"),
        ("hsts = { enabled = true, max_age = 60 }", "hsts"),
        ('allowed_sources = ["10.0.0.0/8"]', "allowed_sources"),
        ('method = "GET"', "method"),
    ],
)
def test_http_options_on_a_passthrough_frontend_are_config_errors(extra: str, message: str) -> None:
    toml = TOML.replace("passthrough = true", f"passthrough = true, {extra}")
    with pytest.raises(Exception, match=message):
        parse_config(toml)


def test_passthrough_on_a_plain_http_listener_is_a_config_error() -> None:
    toml = TOML.replace('protocol = "https"\naddress', 'protocol = "http"\naddress')
    with pytest.raises(Exception, match="plain HTTP listener"):
        parse_config(toml)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cluster_id": None}, "needs a cluster_id"),
        ({"hostname": "~.*[.]example"}, "exact names"),
        ({"hostname": "a.*.example"}, "exact names"),
        ({"path": PathRule(kind=PathRuleKind.REGEX, value="/x")}, "no path rule"),
        ({"rewrite_host": "b"}, "rewrite_host"),
        ({"max_body_size": 10}, "max_body_size"),
    ],
)
def test_the_state_refuses_http_fields_on_passthrough(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(StateError, match=message):
        check_http_frontend(front(**fields))


def test_wildcards_and_a_root_path_are_accepted() -> None:
    check_http_frontend(front(hostname="*.apps.example"))
    check_http_frontend(front(path=PathRule(value="/")))


def state_with_listener() -> ConfigState:
    state = ConfigState()
    state.dispatch(Request.of(add_https_listener=HttpsListenerConfig(address=ADDRESS)))
    return state


def test_the_state_refuses_passthrough_on_http_and_keeps_it_on_https(tmp_path: Path) -> None:
    state = state_with_listener()
    with pytest.raises(StateError, match="HTTPS listeners"):
        state.dispatch(Request.of(add_http_frontend=front()))
    state.dispatch(Request.of(add_https_frontend=front()))
    path = tmp_path / "state.json"
    write_state_file(path, state.generate_requests())
    requests, problems = read_state_file(path)
    assert problems == []
    [restored] = [r.body for r in requests if r.verb == "add_https_frontend"]
    assert restored.passthrough is True and restored.cluster_id == "argocd"
    again = state_with_listener()
    for request in requests:
        if request.verb != "add_https_listener":
            again.dispatch(request)
    assert again.https_fronts == state.https_fronts


def parse(*argv: str) -> Request:
    args = build_parser().parse_args(list(argv))
    result: Request = args.build(args)
    return result


def test_the_cli_flag_on_frontend_https_add() -> None:
    request = parse(
        "frontend",
        "https",
        "add",
        "-a",
        "127.0.0.1:8443",
        "--hostname",
        "argocd.example",
        "--passthrough",
        "id",
        "argocd",
    )
    assert request.verb == "add_https_frontend"
    assert request.body.passthrough is True
    plain = parse(
        "frontend", "https", "add", "-a", "127.0.0.1:8443", "--hostname", "a.example", "id", "a"
    )
    assert plain.body.passthrough is False


def test_the_cli_refuses_http_options_with_passthrough() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"--passthrough: .*no path rule"):
        parse(
            "frontend",
            "https",
            "add",
            "-a",
            "127.0.0.1:8443",
            "--hostname",
            "a.example",
            "--passthrough",
            "-p",
            "/api",
            "id",
            "a",
        )
    with pytest.raises(SystemExit):  # not offered on plain HTTP routes
        parse(
            "frontend",
            "http",
            "add",
            "-a",
            "127.0.0.1:80",
            "--hostname",
            "a.example",
            "--passthrough",
            "id",
            "a",
        )


def test_the_worker_table_matches_exact_then_one_wildcard_label() -> None:
    listener: Any = SimpleNamespace(config=SimpleNamespace(address=ADDRESS))
    routes = PassthroughRoutes()
    assert not routes.active
    routes.add(listener, front(hostname="Argocd.Example."))
    routes.add(listener, front(hostname="*.apps.example", cluster_id="apps"))
    assert routes.active
    exact = routes.match("argocd.example")
    assert exact is not None and exact.cluster_id == "argocd"
    wild = routes.match("shop.apps.example")
    assert wild is not None and wild.cluster_id == "apps"
    for miss in ("", "apps.example", "a.shop.apps.example", "other.example"):
        assert routes.match(miss) is None, miss
    routes.remove(front(hostname="argocd.example"))
    routes.remove(front(hostname="*.apps.example"))
    assert not routes.active


def test_frontend_list_marks_passthrough_frontends() -> None:
    listed = ListedFrontends(
        https_frontends=[front(), front(hostname="term.example", passthrough=False)]
    )
    out = io.StringIO()
    show_frontends(Response.ok(content=ResponseContent.of(frontend_list=listed)), out)
    lines = out.getvalue().splitlines()
    assert any("HTTPS PASSTHROUGH" in line and "argocd.example" in line for line in lines)
    assert any(
        "term.example" in line and "PASSTHROUGH" not in line and "HTTPS" in line for line in lines
    )
