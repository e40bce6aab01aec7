"""A cluster's hash_key (pysozu extension, ingress-nginx's upstream-hash-by): the template's
checks, the TOML key and CLI flag, the key a request gives, and the backend it keeps."""

from __future__ import annotations

import pytest

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.config import ConfigError, parse_config
from dataplane.command.hash_keys import parse_hash_key
from dataplane.command.messages import AddBackend, Cluster, LoadBalancingAlgorithms, Request
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError
from dataplane.proxy.clusters import ClusterRuntime
from dataplane.proxy.http1.head import RequestParser
from dataplane.proxy.routing.hash_key import HashKey

pytestmark = pytest.mark.timeout(10)

MAGLEV = LoadBalancingAlgorithms.MAGLEV


def request(target: str = "/a/b?user=7&x=1", extra: bytes = b""):  # type: ignore[no-untyped-def]
    head = f"GET {target} HTTP/1.1\r\nHost: shop.example\r\n".encode() + extra + b"\r\n"
    parsed = RequestParser().parse(head)
    parsed.route_path = target.partition("?")[0]
    return parsed


def key(template: str, **kwargs: bytes | str) -> bytes:
    extra = kwargs.get("extra", b"")
    assert isinstance(extra, bytes)
    return HashKey(template).key(request(extra=extra), lambda: "203.0.113.9", "https")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$request_uri", b"/a/b?user=7&x=1"),
        ("$uri", b"/a/b"),
        ("$host", b"shop.example"),
        ("${scheme}://$host", b"https://shop.example"),
        ("$remote_addr", b"203.0.113.9"),
        ("$binary_remote_addr", b"203.0.113.9"),
        ("$arg_user", b"7"),
        ("$arg_missing", b""),
        ("$http_x_tenant", b"acme"),
        ("$cookie_session", b"s3"),
        ("$cookie_nope", b""),
        ("$request_uri$host", b"/a/b?user=7&x=1shop.example"),
    ],
)
def test_each_variable(template: str, expected: bytes) -> None:
    extra = b"X-Tenant: acme\r\nCookie: a=1; session=s3\r\n"
    assert key(template, extra=extra) == expected


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("", "1..256"),
        ("$nope", "$nope is not a variable"),
        ("$http_", "is not a variable"),
        ("static", "names no variable"),
        ("$uri\r\n", "without CR"),
    ],
)
def test_bad_templates_are_refused(template: str, said: str) -> None:
    with pytest.raises(ValueError, match=said.replace("$", r"\$")):
        parse_hash_key(template)


def test_the_state_needs_a_hashing_balancer() -> None:
    state = ConfigState()
    with pytest.raises(StateError, match="needs load_balancing HRW or MAGLEV"):
        state.dispatch(Request.of(add_cluster=Cluster(cluster_id="c", hash_key="$uri")))
    with pytest.raises(StateError, match="hash_key"):
        state.dispatch(
            Request.of(add_cluster=Cluster(cluster_id="c", hash_key="$x", load_balancing=MAGLEV))
        )
    state.dispatch(
        Request.of(add_cluster=Cluster(cluster_id="c", hash_key="$uri", load_balancing=MAGLEV))
    )


def test_the_toml_key_and_the_cli_flag() -> None:
    text = """
[[listeners]]
protocol = "http"
address = "127.0.0.1:8080"

[clusters.c]
protocol = "http"
load_balancing = "MAGLEV"
hash_key = "$request_uri"
frontends = [{ address = "127.0.0.1:8080", hostname = "a.example" }]
backends = [{ address = "127.0.0.1:9000" }]
"""
    config = parse_config(text, "c.toml")
    assert config.clusters["c"].cluster.hash_key == "$request_uri"
    with pytest.raises(ConfigError):
        parse_config(text.replace('"MAGLEV"', '"ROUND_ROBIN"'), "c.toml")
    argv = ["cluster", "add", "-i", "c", "--load-balancing-policy", "maglev"]
    args = build_parser().parse_args([*argv, "--hash-key", "$cookie_session"])
    assert args.build(args).body.hash_key == "$cookie_session"


@pytest.mark.parametrize("algorithm", [MAGLEV, LoadBalancingAlgorithms.HRW])
def test_one_key_keeps_one_backend_and_keys_spread(algorithm: LoadBalancingAlgorithms) -> None:
    runtime = ClusterRuntime(Cluster(cluster_id="c", load_balancing=algorithm, hash_key="$uri"))
    for n in range(4):
        address = SocketAddress.parse(f"127.0.0.1:{9000 + n}")
        runtime.add_backend(AddBackend(cluster_id="c", backend_id=f"b{n}", address=address))
    picks = {}
    for n in range(40):
        chosen = {
            runtime.backends.select(0.0, f"/user/{n}".encode()).backend_id  # type: ignore[union-attr]
            for _ in range(5)
        }
        assert len(chosen) == 1  # a key always lands on the same backend
        picks[n] = chosen.pop()
    assert len(set(picks.values())) >= 3  # and keys spread
