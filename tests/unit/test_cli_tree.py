"""The `pysozu` command tree parses sozu's command lines into the right requests."""

from __future__ import annotations

import argparse
import os

import pytest

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    HeaderPosition,
    LoadBalancingAlgorithms,
    PathRuleKind,
    ProxyProtocolConfig,
    Request,
    RulePosition,
)

pytestmark = pytest.mark.timeout(10)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def request(*argv: str) -> Request:
    args = parse(*argv)
    result: Request = args.build(args)
    return result


def test_cluster_add_as_in_the_issue() -> None:
    req = request("cluster", "add", "--id", "app", "--load-balancing-policy", "round_robin")
    assert req.verb == "add_cluster"
    assert req.body.cluster_id == "app"
    assert req.body.load_balancing == LoadBalancingAlgorithms.ROUND_ROBIN


def test_cluster_add_flags() -> None:
    req = request(
        "cluster",
        "add",
        "-i",
        "c",
        "-s",
        "-r",
        "--send-proxy",
        "--expect-proxy",
        "--load-balancing-policy",
        "MAGLEV",
        "--http2",
        "--answer",
        "503=busy",
        "--authorized-hash",
        "u:" + "a" * 64,
    )
    cluster = req.body
    assert cluster.sticky_session and cluster.https_redirect and cluster.http2
    assert cluster.proxy_protocol == ProxyProtocolConfig.RELAY_HEADER
    assert cluster.load_balancing == LoadBalancingAlgorithms.MAGLEV
    assert cluster.answers == {"503": "busy"}
    assert cluster.authorized_hashes == ["u:" + "a" * 64]


def test_unknown_load_balancing_policy_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("cluster", "add", "-i", "c", "--load-balancing-policy", "fastest")
    assert exit_info.value.code == 2
    assert "unknown load balancing policy 'fastest'" in capsys.readouterr().err


def test_backend_add_as_in_the_issue() -> None:
    req = request(
        "backend", "add", "--id", "app", "--backend-id", "app-1", "--address", "127.0.0.1:3000"
    )
    assert req.verb == "add_backend"
    assert (req.body.cluster_id, req.body.backend_id) == ("app", "app-1")
    assert req.body.address == SocketAddress.parse("127.0.0.1:3000")


def test_frontend_http_add_routes_to_a_cluster_as_in_the_issue() -> None:
    req = request(
        "frontend",
        "http",
        "add",
        "--address",
        "0.0.0.0:8080",
        "--hostname",
        "example.com",
        "id",
        "app",
    )
    assert req.verb == "add_http_frontend"
    front = req.body
    assert front.cluster_id == "app"
    assert front.address == SocketAddress.parse("0.0.0.0:8080")
    assert front.hostname == "example.com"
    assert front.position == RulePosition.TREE
    assert front.path.kind == PathRuleKind.PREFIX and front.path.value == ""


def test_frontend_deny_route_and_path_kinds() -> None:
    req = request(
        "frontend",
        "https",
        "add",
        "-a",
        "127.0.0.1:443",
        "--host",
        "a.com",
        "--path-regex",
        "^/api",
        "-m",
        "GET",
        "--header",
        "response=X-A=1",
        "deny",
    )
    assert req.verb == "add_https_frontend"
    assert req.body.cluster_id is None
    assert req.body.path.kind == PathRuleKind.REGEX
    assert req.body.method == "GET"
    assert req.body.headers[0].position == HeaderPosition.RESPONSE
    assert (req.body.headers[0].key, req.body.headers[0].val) == ("X-A", "1")


def test_frontend_remove_keeps_the_route_identity() -> None:
    req = request(
        "frontend",
        "http",
        "remove",
        "-a",
        "127.0.0.1:80",
        "--hostname",
        "a.com",
        "--path-equals",
        "/x",
        "id",
        "app",
    )
    assert req.verb == "remove_http_frontend"
    assert req.body.path.kind == PathRuleKind.EQUALS


def test_two_path_kinds_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse(
            "frontend",
            "http",
            "add",
            "-a",
            "127.0.0.1:80",
            "--hostname",
            "a",
            "-p",
            "/a",
            "--path-regex",
            "b",
            "id",
            "x",
        )


def test_a_route_needs_a_target() -> None:
    with pytest.raises(SystemExit):
        parse("frontend", "http", "add", "-a", "127.0.0.1:80", "--hostname", "a")


def test_bad_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("backend", "add", "-i", "a", "--backend-id", "b", "-a", "nowhere")
    assert "invalid socket address" in capsys.readouterr().err


def test_state_save_sends_an_absolute_path(tmp_path: object) -> None:
    req = request("state", "save", "--file", "state.json")
    assert req.verb == "save_state"
    assert req.body == os.path.abspath("state.json")


def test_shutdown_soft_and_hard() -> None:
    assert request("shutdown").verb == "soft_stop"
    assert request("shutdown", "--hard").verb == "hard_stop"


def test_global_options_anywhere() -> None:
    args = parse("-c", "a.toml", "status", "-j", "-t", "500")
    assert (args.config, args.json, args.timeout) == ("a.toml", True, 500)
    args = parse("status")
    assert (args.config, args.json, args.timeout) == (None, False, None)


def test_health_check_timeout_is_not_the_global_timeout() -> None:
    args = parse(
        "cluster", "health-check", "set", "-i", "a", "-u", "/h", "--timeout", "7", "-t", "300"
    )
    assert args.timeout == 300
    req = args.build(args)
    assert req.body.config.timeout == 7


def test_listener_add_and_activate() -> None:
    req = request(
        "listener", "http", "add", "-a", "127.0.0.1:8080", "--front-timeout", "5", "--expect-proxy"
    )
    assert req.verb == "add_http_listener"
    assert req.body.front_timeout == 5 and req.body.expect_proxy
    req = request("listener", "tcp", "activate", "-a", "127.0.0.1:9000")
    assert req.verb == "activate_listener"
    assert req.body.proxy.name == "TCP"


def test_listener_update_only_patches_what_is_given() -> None:
    req = request(
        "listener",
        "https",
        "update",
        "-a",
        "127.0.0.1:443",
        "--no-expect-proxy",
        "--h2-max-concurrent-streams",
        "50",
        "--hsts-max-age",
        "10",
    )
    patch = req.body
    assert patch.expect_proxy is False
    assert patch.h2_max_concurrent_streams == 50
    assert patch.front_timeout is None
    assert patch.hsts is not None and patch.hsts.max_age == 10


def test_tags_are_parsed() -> None:
    req = request(
        "frontend",
        "tcp",
        "add",
        "-i",
        "db",
        "-a",
        "127.0.0.1:5432",
        "--tags",
        "team=data, tier=gold",
    )
    assert req.body.tags == {"team": "data", "tier": "gold"}


def test_cluster_list_variants() -> None:
    assert request("cluster", "list").verb == "query_clusters_hashes"
    assert request("cluster", "list", "-i", "app").verb == "query_cluster_by_id"
    by_domain = request("cluster", "list", "-d", "example.com/api")
    assert by_domain.body.hostname == "example.com" and by_domain.body.path == "/api"


def test_every_command_does_something() -> None:
    """Walk the whole tree: each leaf builds a request or runs something locally."""
    leaves = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            leaves.append((path, parser))
            return
        for name, child in subparsers[0].choices.items():
            walk(child, [*path, name])

    walk(build_parser(), [])
    assert len(leaves) > 60
    for path, parser in leaves:
        defaults = parser._defaults
        if path[-1] in ("id", "deny"):  # route targets: the parent leaf builds
            continue
        assert defaults.get("build") or defaults.get("run"), path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--version")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("pysozu ")


def _all_parsers() -> list[tuple[list[str], argparse.ArgumentParser]]:
    found: list[tuple[list[str], argparse.ArgumentParser]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        found.append((path, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*path, name])

    walk(build_parser(), [])
    return found


def test_every_option_and_positional_has_help() -> None:
    missing = []
    for path, parser in _all_parsers():
        for action in parser._actions:
            if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(" ".join([*path, *action.option_strings] or [action.dest]))
    assert missing == []


def test_every_timeout_option_says_its_unit() -> None:
    timeouts = [
        (path, action)
        for path, parser in _all_parsers()
        for action in parser._actions
        if any("timeout" in flag for flag in action.option_strings)
    ]
    assert len(timeouts) > 30  # the listeners', the clusters', the health check's, -t
    for path, action in timeouts:
        assert action.help and ("seconds" in action.help or "in ms" in action.help), (
            path,
            action.option_strings,
        )


def _help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv, "--help")
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return " ".join(captured.out.split())  # argparse wraps to the terminal: compare words


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["listener", "https", "update"],
        ["listener", "http", "add"],
        ["listener", "udp", "add"],
        ["metrics", "get"],
        ["cluster", "add"],
        ["cluster", "health-check", "set"],
        ["frontend", "https", "add"],
        ["certificate", "replace"],
        ["worker"],
        ["main"],
    ],
)
def test_help_renders(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    text = _help_of(argv, capsys)
    assert text.startswith(f"usage: pysozu {' '.join(argv)}".rstrip())


def test_listener_help_gives_units_and_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    update = _help_of(["listener", "https", "update"], capsys)
    assert "--front-timeout SECONDS inactivity timeout of the client connection, in seconds" in (
        update
    )
    assert "--request-timeout SECONDS" in update and "options left out keep" in update
    assert "HTTP/2 limits: pysozu does not serve HTTP/2 yet" in update
    assert "--h2-initial-connection-window N connection receive window, in bytes" in update
    added = _help_of(["listener", "http", "add"], capsys)
    assert "in seconds (default: 60)" in added  # front_timeout, from HttpListenerConfig
    assert "in seconds (default: 3)" in added  # connect_timeout
    udp = _help_of(["listener", "udp", "add"], capsys)
    assert "inactivity timeout of a client flow, in seconds (default: 30)" in udp
    assert "--max-rx-datagram-size BYTES" in udp
    metrics = _help_of(["metrics", "get"], capsys)
    assert "--refresh SECONDS" in metrics and "comma-separated" in metrics
    check = _help_of(["cluster", "health-check", "set"], capsys)
    assert "--timeout SECONDS how long one check may take, in seconds (default: 5)" in check


def test_internal_commands_say_so_and_stay_unlisted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = {choice.dest for choice in commands._choices_actions}
    assert "start" in listed and not listed & {"worker", "main"}
    for command in ("worker", "main"):
        assert "internal:" in _help_of([command], capsys)


@pytest.mark.parametrize(
    "given",
    [
        ["--tls-versions", "TLS_V12", "--tls-versions", "TLS_V13"],  # sozu: the option repeated
        ["--tls-versions", "TLS_V12", "TLS_V13"],
        ["--tls-versions", "TLS_V12,TLS_V13"],
    ],
)
def test_list_options_take_sozus_forms_and_ours(given: list[str]) -> None:
    req = request("listener", "https", "add", "-a", "127.0.0.1:8443", *given)
    assert [v.name for v in req.body.versions] == ["TLS_V1_2", "TLS_V1_3"]


@pytest.mark.parametrize("given", [["h2,http/1.1"], ["h2", "http/1.1"]])
def test_alpn_protocols_comma_separated_as_sozu_takes_them(given: list[str]) -> None:
    req = request("listener", "https", "update", "-a", "127.0.0.1:8443", "--alpn-protocols", *given)
    assert req.body.alpn_protocols.values == ["h2", "http/1.1"]


def test_a_bad_item_of_a_list_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(
            "listener", "https", "add", "-a", "127.0.0.1:8443", "--tls-versions", "TLS_V12,TLS_V9"
        )
    assert stopped.value.code == 2
    assert "unknown TLS version 'TLS_V9'" in capsys.readouterr().err
