"""The `pysozu` command tree parses sozu's command lines into the right requests."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import pytest
import trustme

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    Header,
    HeaderPosition,
    ListenerType,
    LoadBalancingAlgorithms,
    MetricsConfiguration,
    PathRuleKind,
    ProxyProtocolConfig,
    RedirectPolicy,
    RedirectScheme,
    Request,
    RulePosition,
    TlsVersion,
)
from dataplane.command.state_rules import certificate_fingerprint

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


def test_listener_request_body_rate_add_and_update() -> None:
    add = request("listener", "http", "add", "-a", "127.0.0.1:80")
    assert (add.body.request_body_timeout, add.body.request_body_min_rate) == (30, 500)
    add = request(
        "listener", "https", "add", "-a", "127.0.0.1:443",
        "--request-body-timeout", "5", "--request-body-min-rate", "0",
    )  # fmt: skip
    assert (add.body.request_body_timeout, add.body.request_body_min_rate) == (5, 0)
    base = ("listener", "http", "update", "-a", "127.0.0.1:80")
    patch = request(*base, "--request-body-min-rate", "2048")
    assert (patch.body.request_body_timeout, patch.body.request_body_min_rate) == (None, 2048)


def test_listener_trusted_proxies_add_update_and_clear() -> None:
    req = request(
        "listener", "http", "add", "-a", "127.0.0.1:80", "--trusted-proxies", "10.0.0.0/8,::1"
    )
    assert req.body.trusted_proxies == ["10.0.0.0/8", "::1"]
    assert request("listener", "http", "add", "-a", "127.0.0.1:80").body.trusted_proxies == []
    base = ("listener", "https", "update", "-a", "127.0.0.1:443")
    patch = request(*base, "--trusted-proxies", "192.168.0.0/16", "--trusted-proxies", "10.1.2.3")
    assert patch.body.trusted_proxies == ["192.168.0.0/16", "10.1.2.3"]
    assert request(*base, "--no-trusted-proxies").body.trusted_proxies == []
    assert request(*base, "--front-timeout", "3").body.trusted_proxies is None  # kept


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "nowhere", "10.0.0.0/33", "::ffff:10.0.0.0/104"])
def test_a_bad_trusted_proxy_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("listener", "http", "add", "-a", "127.0.0.1:80", "--trusted-proxies", bad)
    assert "--trusted-proxies" in capsys.readouterr().err


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
    assert "HTTP/2 limits: sozu's limits for HTTP/2 clients" in update
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


# -- sozu's own command lines ------------------------------------------------------------------
# Each line is taken from sozu 2.1's docs (doc/configure_cli.md, doc/*.md), README or the usage
# its clap definitions (bin/src/cli.rs) accept, and parses into the request sozu sends: its verb
# and key fields (`a.b` reads a nested field). `{pem}` is a directory of PEM files.

HEX = "0123456789abcdef" * 4

SOZU_COMMAND_LINES: list[tuple[str, str, dict[str, object]]] = [
    (
        "-c /etc/sozu/config.toml cluster add --id my_cluster --load-balancing-policy roundrobin",
        "add_cluster",
        {"cluster_id": "my_cluster", "load_balancing": LoadBalancingAlgorithms.ROUND_ROBIN},
    ),
    (
        "cluster add --id c --load-balancing-policy roundrobin --http2",
        "add_cluster",
        {"http2": True, "proxy_protocol": None},
    ),
    (
        "cluster add -i c --load-balancing-policy least_loaded -s -r --send-proxy "
        "--https-redirect-port 8443 --www-authenticate 'Basic realm=\"sozu\"' "
        f"--authorized-hash admin:{HEX} --authorized-hash ops:{HEX} --answer 503=busy",
        "add_cluster",
        {
            "load_balancing": LoadBalancingAlgorithms.LEAST_LOADED,
            "sticky_session": True,
            "https_redirect": True,
            "proxy_protocol": ProxyProtocolConfig.SEND_HEADER,
            "https_redirect_port": 8443,
            "www_authenticate": 'Basic realm="sozu"',
            "authorized_hashes": [f"admin:{HEX}", f"ops:{HEX}"],
            "answers": {"503": "busy"},
        },
    ),
    (
        "cluster add -i c --load-balancing-policy Power_Of_Two --expect-proxy",
        "add_cluster",
        {
            "load_balancing": LoadBalancingAlgorithms.POWER_OF_TWO,
            "proxy_protocol": ProxyProtocolConfig.EXPECT_HEADER,
        },
    ),
    (
        "cluster add -i c --load-balancing-policy hrw --answer 503=file://{pem}/answer.http",
        "add_cluster",
        {"load_balancing": LoadBalancingAlgorithms.HRW, "answers": {"503": "HTTP/1.1 503\r\n\r\n"}},
    ),
    ("cluster remove -i c", "remove_cluster", {"": "c"}),
    ("cluster list", "query_clusters_hashes", {}),
    ("cluster list --id c", "query_cluster_by_id", {"": "c"}),
    ("cluster list -d example.com/api", "query_clusters_by_domain", {"path": "/api"}),
    ("cluster list -d example.com/", "query_clusters_by_domain", {"path": "/"}),
    ("cluster list -d example.com", "query_clusters_by_domain", {"hostname": "example.com"}),
    ("cluster h2 enable --id MyH2Cluster", "query_cluster_by_id", {"": "MyH2Cluster"}),
    (
        "cluster health-check set --id my-cluster --uri /health --interval 10 --timeout 5 "
        "--healthy-threshold 3 --unhealthy-threshold 3 --expected-status 200",
        "set_health_check",
        {"cluster_id": "my-cluster", "config.uri": "/health", "config.expected_status": 200},
    ),
    ("cluster health-check remove --id my-cluster", "remove_health_check", {"": "my-cluster"}),
    (
        "cluster health-check list --id my-cluster",
        "query_health_checks",
        {"cluster_id": "my-cluster"},
    ),
    (
        "backend add --address 127.0.0.1:3000 --backend-id my_backend --id my_cluster",
        "add_backend",
        {
            "cluster_id": "my_cluster",
            "backend_id": "my_backend",
            "address": SocketAddress.parse("127.0.0.1:3000"),
            "backup": None,
        },
    ),
    (
        "backend add -i c --backend-id b -a [::1]:3000 -s sticky-1 -b true",
        "add_backend",
        {"sticky_id": "sticky-1", "backup": True, "address": SocketAddress.parse("[::1]:3000")},
    ),
    ("backend remove -i c --backend-id b -a 127.0.0.1:3000", "remove_backend", {"backend_id": "b"}),
    (
        "--config /etc/sozu/config.toml frontend http add --address 0.0.0.0:80 "
        "--hostname example.com id my_cluster",
        "add_http_frontend",
        {
            "cluster_id": "my_cluster",
            "hostname": "example.com",
            "path.kind": PathRuleKind.PREFIX,
            "path.value": "",
            "position": RulePosition.TREE,
        },
    ),
    (
        "frontend http add --address 0.0.0.0:80 --hostname example.com --path-prefix /api "
        "id my_cluster",
        "add_http_frontend",
        {"path.kind": PathRuleKind.PREFIX, "path.value": "/api"},
    ),
    (
        "frontend https add --address 0.0.0.0:443 --host api.example.com --hsts-max-age 31536000 "
        "--hsts-include-subdomains id api",
        "add_https_frontend",
        {"hsts.enabled": True, "hsts.max_age": 31536000, "hsts.include_subdomains": True},
    ),
    (
        "frontend https add -a 0.0.0.0:443 --hostname a.com --hsts-preload id api",
        "add_https_frontend",
        {"hsts.max_age": 31536000, "hsts.preload": True},
    ),
    (
        "frontend https add -a 0.0.0.0:443 --hostname a.com --hsts-disabled id api",
        "add_https_frontend",
        {"hsts.enabled": False, "hsts.max_age": None},
    ),
    (
        "frontend http add -a 0.0.0.0:80 --hostname old.example.com --path-equals /x "
        "-m GET --redirect Permanent --redirect-scheme use_https --rewrite-host new.example.com "
        "--rewrite-path /y --rewrite-port 8443 --redirect-template moved --required-auth deny",
        "add_http_frontend",
        {
            "cluster_id": None,
            "path.kind": PathRuleKind.EQUALS,
            "method": "GET",
            "redirect": RedirectPolicy.PERMANENT,
            "redirect_scheme": RedirectScheme.USE_HTTPS,
            "rewrite_host": "new.example.com",
            "rewrite_path": "/y",
            "rewrite_port": 8443,
            "redirect_template": "moved",
            "required_auth": True,
        },
    ),
    (
        "frontend http add -a 0.0.0.0:80 --hostname h --redirect-scheme use-same "
        "--redirect unauthorized id c",
        "add_http_frontend",
        {"redirect": RedirectPolicy.UNAUTHORIZED, "redirect_scheme": RedirectScheme.USE_SAME},
    ),
    (
        "frontend http add -a 0.0.0.0:80 --hostname h "
        "--tags 'owner=John ,uuid=0dd8d7b1-a50a=, hexkey=#846e84' id c",
        "add_http_frontend",
        {"tags": {"owner": "John", "uuid": "0dd8d7b1-a50a=", "hexkey": "#846e84"}},
    ),
    (
        "frontend http add -a 0.0.0.0:80 --hostname h --header request=X-Forwarded-Proto=https "
        "--header response=Server= --header BOTH=X-Id=a=b id c",
        "add_http_frontend",
        {
            "headers": [
                Header(position=HeaderPosition.REQUEST, key="X-Forwarded-Proto", val="https"),
                Header(position=HeaderPosition.RESPONSE, key="Server", val=""),
                Header(position=HeaderPosition.BOTH, key="X-Id", val="a=b"),
            ]
        },
    ),
    (
        "frontend https remove -a 0.0.0.0:443 --hostname h --path-regex '^/api' id c",
        "remove_https_frontend",
        {"path.kind": PathRuleKind.REGEX, "path.value": "^/api", "cluster_id": "c"},
    ),
    (
        "frontend tcp add -i db -a 127.0.0.1:5432 --tags team=data",
        "add_tcp_frontend",
        {"cluster_id": "db", "tags": {"team": "data"}},
    ),
    ("frontend tcp remove --id db --address 127.0.0.1:5432", "remove_tcp_frontend", {}),
    ("frontend udp add -i dns -a 127.0.0.1:53", "add_udp_frontend", {"cluster_id": "dns"}),
    ("frontend udp remove -i dns -a 127.0.0.1:53", "remove_udp_frontend", {}),
    (
        "frontend list --http --tcp -d example",
        "list_frontends",
        {"http": True, "https": False, "tcp": True, "domain": "example"},
    ),
    (
        "listener http add -a 0.0.0.0:80 --public-address 1.2.3.4:80 --expect-proxy "
        "--sticky-name S --front-timeout 5 --back-timeout 6 --request-timeout 7 "
        "--connect-timeout 8 --answer-404 {pem}/answer.http",
        "add_http_listener",
        {
            "public_address": SocketAddress.parse("1.2.3.4:80"),
            "expect_proxy": True,
            "sticky_name": "S",
            "front_timeout": 5,
            "back_timeout": 6,
            "request_timeout": 7,
            "connect_timeout": 8,
            "http_answers.answer_404": "HTTP/1.1 503\r\n\r\n",
        },
    ),
    ("listener https add --address 0.0.0.0:443", "add_https_listener", {"versions": []}),
    (
        "listener https add -a 0.0.0.0:443 --tls-versions TLS_V12 --tls-versions TLS_V13 "
        "--tls-cipher-list TLS13_AES_256_GCM_SHA384 --tls-cipher-list TLS13_AES_128_GCM_SHA256",
        "add_https_listener",
        {
            "versions": [TlsVersion.TLS_V1_2, TlsVersion.TLS_V1_3],
            "cipher_list": ["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256"],
        },
    ),
    (
        "listener https add -a 0.0.0.0:443 --tls-versions TLSv1 --tls-versions TLS_V11",
        "add_https_listener",
        {"versions": [TlsVersion.TLS_V1_0, TlsVersion.TLS_V1_1]},
    ),
    (
        "listener https update -a 0.0.0.0:8443 --h2-max-rst-stream-per-window 50 "
        "--h2-max-rst-stream-abusive-lifetime 25",
        "update_https_listener",
        {
            "h2_max_rst_stream_per_window": 50,
            "h2_max_rst_stream_abusive_lifetime": 25,
            "front_timeout": None,
            "expect_proxy": None,
            "disable_http11": None,
            "alpn_protocols": None,
            "hsts": None,
        },
    ),
    ("listener https update -a 0.0.0.0:8443 --disable-http11", "", {"disable_http11": True}),
    ("listener https update -a 0.0.0.0:8443 --enable-http11", "", {"disable_http11": False}),
    (
        "listener https update -a 0.0.0.0:8443 --disable-http11 --enable-http11",
        "update_https_listener",
        {"disable_http11": False},  # clap's overrides_with: the last one wins
    ),
    (
        "listener https update -a 0.0.0.0:8443 --expect-proxy --no-expect-proxy",
        "update_https_listener",
        {"expect_proxy": False},
    ),
    (
        "listener https update -a 0.0.0.0:8443 --no-strict-sni-binding",
        "update_https_listener",
        {"strict_sni_binding": False},
    ),
    (
        "listener https update -a 0.0.0.0:8443 --alpn-protocols h2,http/1.1",
        "update_https_listener",
        {"alpn_protocols.values": ["h2", "http/1.1"]},
    ),
    ("listener https update -a 0.0.0.0:8443 --reset-alpn", "", {"alpn_protocols.values": []}),
    (
        "listener https update -a 0.0.0.0:443 --hsts-max-age 31536000 --hsts-include-subdomains "
        "--hsts-force-replace-backend",
        "update_https_listener",
        {"hsts.max_age": 31536000, "hsts.force_replace_backend": True, "hsts.preload": None},
    ),
    (
        "listener http update -a 0.0.0.0:80 --sozu-id-header X-Edge-Id --no-expect-proxy",
        "update_http_listener",
        {"sozu_id_header": "X-Edge-Id", "expect_proxy": False},
    ),
    (
        "listener tcp add -a 0.0.0.0:9000 --public-address 1.2.3.4:9000 --expect-proxy",
        "add_tcp_listener",
        {"expect_proxy": True, "public_address": SocketAddress.parse("1.2.3.4:9000")},
    ),
    (
        "listener tcp update -a 0.0.0.0:9000 --front-timeout 9 --expect-proxy",
        "update_tcp_listener",
        {"front_timeout": 9, "expect_proxy": True, "back_timeout": None},
    ),
    (
        "listener udp add -a 0.0.0.0:53 --front-timeout 3 --back-timeout 4 "
        "--max-rx-datagram-size 1400 --max-flows 10",
        "add_udp_listener",
        {"front_timeout": 3, "back_timeout": 4, "max_rx_datagram_size": 1400, "max_flows": 10},
    ),
    ("listener udp update -a 0.0.0.0:53 --max-flows 0", "update_udp_listener", {"max_flows": 0}),
    ("listener http activate -a 0.0.0.0:80", "activate_listener", {"proxy": ListenerType.HTTP}),
    ("listener https deactivate -a 0.0.0.0:443", "deactivate_listener", {}),
    ("listener udp remove -a 0.0.0.0:53", "remove_listener", {"proxy": ListenerType.UDP}),
    ("listener list", "list_listeners", {}),
    (
        "certificate add --address 0.0.0.0:443 --certificate {pem}/cert.pem "
        "--certificate-chain {pem}/chain.pem --key {pem}/key.pem --tls-versions TLS_V12",
        "add_certificate",
        {
            "address": SocketAddress.parse("0.0.0.0:443"),
            "certificate.certificate": "CERT",
            "certificate.key": "KEY",
            "certificate.versions": [TlsVersion.TLS_V1_2],
        },
    ),
    (
        f"certificate remove -a 0.0.0.0:443 -f {HEX}",
        "remove_certificate",
        {"fingerprint": HEX},
    ),
    (
        "certificate replace -a 0.0.0.0:443 --new-certificate {pem}/cert.pem "
        f"--new-certificate-chain {{pem}}/chain.pem --new-key {{pem}}/key.pem -f {HEX}",
        "replace_certificate",
        {"old_fingerprint": HEX, "new_certificate.key": "KEY"},
    ),
    (
        "certificate list -f ab -d example.com",
        "query_certificates_from_the_state",
        {"fingerprint": "ab", "domain": "example.com"},
    ),
    ("certificate list --workers", "query_certificates_from_workers", {}),
    (
        "metrics get --names a,b --clusters x,y --backends p,q",
        "query_metrics",
        {"metric_names": ["a", "b"], "cluster_ids": ["x", "y"], "backend_ids": ["p", "q"]},
    ),
    (
        "metrics get -n a -n b,c -k x -k y -b p -l -w --no-clusters",
        "query_metrics",
        {
            "metric_names": ["a", "b", "c"],
            "cluster_ids": ["x", "y"],
            "backend_ids": ["p"],
            "list": True,
            "workers": True,
            "no_clusters": True,
        },
    ),
    ("metrics enable", "configure_metrics", {"": MetricsConfiguration.ENABLED}),
    ("metrics disable", "configure_metrics", {"": MetricsConfiguration.DISABLED}),
    ("metrics clear", "configure_metrics", {"": MetricsConfiguration.CLEAR}),
    ("shutdown", "soft_stop", {}),
    ("shutdown --hard", "hard_stop", {}),
    ("upgrade", "upgrade_main", {}),
    ("upgrade --worker 1", "upgrade_worker", {"": 1}),
    ("status", "status", {}),
    ("logging debug", "logging", {"": "debug"}),
    ("state stats", "count_requests", {}),
    ("reload", "reload_configuration", {"": ""}),
    ("events", "subscribe_events", {}),
    ("connection-limit set 10", "set_max_connections_per_ip", {"": 10}),
    ("connection-limit remove", "set_max_connections_per_ip", {"": 0}),
    ("connection-limit show", "query_max_connections_per_ip", {}),
]


@pytest.fixture
def pem_files(tmp_path: Path) -> Path:
    (tmp_path / "cert.pem").write_text("CERT")
    (tmp_path / "chain.pem").write_text("")
    (tmp_path / "key.pem").write_text("KEY")
    (tmp_path / "answer.http").write_text("HTTP/1.1 503\r\n\r\n")
    return tmp_path


def _field(message: object, path: str) -> object:
    for name in filter(None, path.split(".")):
        message = getattr(message, name)
    return message


@pytest.mark.parametrize(("line", "verb", "fields"), SOZU_COMMAND_LINES)
def test_sozu_command_lines_send_what_sozu_sends(
    line: str, verb: str, fields: dict[str, object], pem_files: Path
) -> None:
    req = request(*shlex.split(line.format(pem=pem_files)))
    if verb:
        assert req.verb == verb
    for path, expected in fields.items():
        assert _field(req.body, path) == expected, path


def test_global_options_may_follow_a_route_target() -> None:
    args = parse("frontend", "http", "add", "-a", "0.0.0.0:80", "--hostname", "h", "id", "c", "-j")
    assert args.json and args.cluster_id == "c"
    args = parse(
        "frontend", "http", "add", "-a", "0.0.0.0:80", "--hostname", "h", "deny", "-c", "x"
    )
    assert args.config == "x" and args.route == "deny"


def test_sozu_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("-V")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("pysozu ")


def test_old_cert_alias_names_the_certificate_to_replace(tmp_path: Path) -> None:
    authority = trustme.CA()
    old = tmp_path / "old.pem"
    authority.issue_cert("a.example").cert_chain_pems[0].write_to_path(str(old))
    (tmp_path / "key.pem").write_text("KEY")
    req = request(
        "certificate", "replace", "-a", "0.0.0.0:443", "--new-certificate", str(old),
        "--new-certificate-chain", str(old), "--new-key", str(tmp_path / "key.pem"),
        "--old-cert", str(old),
    )  # fmt: skip
    assert req.body.old_fingerprint == certificate_fingerprint(old.read_text())
    removed = request("certificate", "remove", "-a", "0.0.0.0:443", "--cert", str(old))
    assert removed.body.fingerprint == req.body.old_fingerprint


# What sozu refuses, pysozu refuses too (a usage error, exit status 2).
SOZU_REFUSES = [
    "cluster add -i c --load-balancing-policy fastest",
    "cluster add -i c --https-redirect-port 70000",
    "cluster add -i c --authorized-hash admin:secret",
    "cluster add -i c --answer 503=",
    "cluster list -i a -d example.com",
    "frontend http add -a 0.0.0.0:80 --hostname h --rewrite-port 0 id c",
    "frontend http add -a 0.0.0.0:80 --hostname h --redirect found id c",
    "frontend http add -a 0.0.0.0:80 --hostname h --redirect-scheme sideways id c",
    "frontend http add -a 0.0.0.0:80 --hostname h --header 'request=Bad Name=1' id c",
    "frontend http add -a 0.0.0.0:80 --hostname h --header 'request=X-A=a\nb' id c",
    "frontend http add -a 0.0.0.0:80 --hostname h --header middle=X-A=1 id c",
    "frontend http add -a 0.0.0.0:80 --hostname h --tags novalue id c",
    "listener http add -a 0.0.0.0:80 --front-timeout -1",
    "listener https add -a 0.0.0.0:443 --tls-versions TLS_V14",
    "listener https update -a 0.0.0.0:443 --alpn-protocols h2 --reset-alpn",
    "listener tcp update -a 0.0.0.0:9 --connect-timeout 1.5",
    f"certificate remove -a 0.0.0.0:443 --certificate c.pem -f {HEX}",
    "backend add -i c --backend-id b -a 127.0.0.1:1 --backup maybe",
    "backend add -i c -a 127.0.0.1:1",
    "connection-limit set -5",
    "cluster add -i c --sticky-session true",
]


@pytest.mark.parametrize("line", SOZU_REFUSES)
def test_what_sozu_refuses_is_a_usage_error(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        request(*shlex.split(line))
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_frontend_access_flags() -> None:
    req = request(
        *shlex.split(
            "frontend http add -a 127.0.0.1:80 --hostname a.com --allow-source 10.0.0.0/8 "
            "--allow-source 2001:db8::/32 --deny-source 10.9.0.0/16 --max-body-size 1048576 "
            "--rate-limit 0.5 --rate-burst 4 --rate-limit-status 429 "
            "--rate-limit-exempt 10.1.0.0/16 id app"
        )
    )
    front = req.body
    assert front.allowed_sources == ["10.0.0.0/8", "2001:db8::/32"]
    assert front.denied_sources == ["10.9.0.0/16"]
    assert front.max_body_size == 1048576
    [limit] = front.rate_limits
    assert (limit.rate, limit.burst, limit.status) == (0.5, 4, 429)
    assert limit.exempt_sources == ["10.1.0.0/16"]


def test_rate_limit_details_without_a_rate_are_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="need --rate-limit"):
        request(*shlex.split("frontend http add -a 127.0.0.1:80 --hostname a --rate-burst 3 id a"))


def test_h2c_and_rate_limit_zone_flags() -> None:
    added = request(*shlex.split("listener http add -a 127.0.0.1:80 --h2c"))
    assert added.body.h2c is True
    assert request(*shlex.split("listener http add -a 127.0.0.1:80")).body.h2c is False
    on = request(*shlex.split("listener http update -a 127.0.0.1:80 --h2c"))
    off = request(*shlex.split("listener http update -a 127.0.0.1:80 --no-h2c"))
    kept = request(*shlex.split("listener http update -a 127.0.0.1:80"))
    assert (on.body.h2c, off.body.h2c, kept.body.h2c) == (True, False, None)
    front = request(
        *shlex.split(
            "frontend http add -a 127.0.0.1:80 --hostname a --rate-limit 2 "
            "--rate-limit-zone default/web id app"
        )
    )
    assert front.body.rate_limits[0].zone == "default/web"
