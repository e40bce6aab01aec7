"""Per-cluster connect_timeout, back_timeout and sticky_name (a pysozu extension of sozu's
Cluster): the wire format, the state's checks, the TOML keys, the CLI flags, and the values the
worker's ClusterRuntime keeps for its hot path."""

from __future__ import annotations

import pytest

from dataplane.cli.tree import build_parser
from dataplane.command.codec import DecodeError, decode, encode
from dataplane.command.config import ConfigError, parse_config
from dataplane.command.messages import Cluster, Request
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError
from dataplane.command.statefile import decode_state, encode_state
from dataplane.proxy.clusters import ClusterRuntime

pytestmark = pytest.mark.timeout(10)

LISTENER = """
[[listeners]]
protocol = "http"
address = "127.0.0.1:8080"
"""


def cluster_toml(extra: str, protocol: str = "http") -> str:
    return f"""{LISTENER}
[clusters.app]
protocol = "{protocol}"
frontends = [{{ address = "127.0.0.1:8080", hostname = "example.com" }}]
backends = [{{ address = "127.0.0.1:9000" }}]
{extra}
"""


def problems(text: str) -> list[tuple[str, str | None, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.toml")
    return [(p.table, p.key, p.message) for p in caught.value.problems]


# -- wire format ------------------------------------------------------------------------------


def test_the_new_fields_round_trip_and_come_last() -> None:
    cluster = Cluster(cluster_id="app", connect_timeout=2, back_timeout=1, sticky_name="APPID")
    request = Request.of(add_cluster=cluster)
    assert decode(encode(request), Request) == request
    fields = Cluster.__struct_fields__
    extensions = fields[fields.index("udp") + 1 :]  # after sozu 2.1's own fields
    assert extensions[:3] == ("connect_timeout", "back_timeout", "sticky_name")
    assert b'"connect_timeout":2,"back_timeout":1,"sticky_name":"APPID"' in encode(cluster)


def test_records_without_the_fields_still_decode() -> None:
    # An add_cluster line as sozu 2.1 (and older pysozu) writes it in a state file.
    line = (
        b'{"id":"SAVE-0","content":{"request_type":{"ADD_CLUSTER":{"cluster_id":"app",'
        b'"sticky_session":false,"https_redirect":false,"load_balancing":0,"answers":{}}}}}'
    )
    requests, skipped = decode_state(line + b"\n\x00")
    assert skipped == []
    cluster = requests[0].body
    assert (cluster.connect_timeout, cluster.back_timeout, cluster.sticky_name) == (None,) * 3
    saved = Request.of(add_cluster=Cluster(cluster_id="a", back_timeout=7, sticky_name="S"))
    assert decode_state(encode_state([saved]))[0] == [saved]


def test_wrong_types_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="back_timeout"):
        decode(b'{"cluster_id":"a","back_timeout":"1"}', Cluster)


# -- state checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"connect_timeout": 0}, "connect_timeout 0 is not in 1..4294967295"),
        ({"back_timeout": -1}, "back_timeout must not be negative"),
        ({"back_timeout": 2**32}, "back_timeout 4294967296 is not in 1"),
        ({"sticky_name": ""}, "sticky_name '' is not a valid HTTP token"),
        ({"sticky_name": "a b"}, "sticky_name 'a b' is not a valid HTTP token"),
        ({"sticky_name": "a=b"}, "is not a valid HTTP token"),
        ({"sticky_name": "SID\n"}, "is not a valid HTTP token"),
        ({"sticky_name": "sé"}, "is not a valid HTTP token"),
        ({"sticky_name": "S" * 257}, "sticky_name is longer than 256 characters"),
    ],
)
def test_the_state_refuses_bad_values(fields: dict[str, object], match: str) -> None:
    cluster = Cluster(cluster_id="app", **fields)  # type: ignore[arg-type]
    with pytest.raises(StateError, match=match):
        ConfigState().dispatch(Request.of(add_cluster=cluster))


def test_the_state_keeps_good_values() -> None:
    state = ConfigState()
    cluster = Cluster(cluster_id="app", connect_timeout=1, back_timeout=3600, sticky_name="r_1")
    state.dispatch(Request.of(add_cluster=cluster))
    assert state.clusters["app"] == cluster


# -- TOML -------------------------------------------------------------------------------------


def test_toml_keys_set_the_cluster() -> None:
    text = cluster_toml('connect_timeout = 2\nback_timeout = 1\nsticky_name = "APPID"')
    cluster = parse_config(text, "config.toml").clusters["app"].cluster
    assert (cluster.connect_timeout, cluster.back_timeout, cluster.sticky_name) == (2, 1, "APPID")
    plain = parse_config(cluster_toml(""), "config.toml").clusters["app"].cluster
    assert (plain.connect_timeout, plain.back_timeout, plain.sticky_name) == (None, None, None)


def test_bad_toml_values_are_reported_with_table_and_key() -> None:
    text = cluster_toml('connect_timeout = 0\nback_timeout = "30"\nsticky_name = "my cookie"')
    assert problems(text) == [
        ("clusters.app", "connect_timeout", "0 is out of range 1..4294967295"),
        ("clusters.app", "back_timeout", "expected an integer, got the string '30'"),
        ("clusters.app", "sticky_name", "cookie name 'my cookie' is not a valid HTTP token"),
    ]
    with pytest.raises(ConfigError, match=r"config.toml: \[clusters.app\] sticky_name: "):
        parse_config(cluster_toml('sticky_name = "a;b"'), "config.toml")


def test_sticky_name_on_a_tcp_cluster_is_ignored_with_a_warning() -> None:
    text = """
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:8081"
[clusters.db]
protocol = "tcp"
sticky_name = "X"
frontends = [{ address = "127.0.0.1:8081" }]
backends = [{ address = "127.0.0.1:9000" }]
"""
    config = parse_config(text, "config.toml")
    assert config.clusters["db"].cluster.sticky_name is None
    assert any("[clusters.db] sticky_name: does not apply" in w for w in config.warnings)


# -- CLI --------------------------------------------------------------------------------------


def test_cluster_add_flags() -> None:
    argv = ["cluster", "add", "-i", "app", "--connect-timeout", "2", "--back-timeout", "5"]
    args = build_parser().parse_args([*argv, "--sticky-name", "APPID"])
    cluster = args.build(args).body
    assert (cluster.connect_timeout, cluster.back_timeout, cluster.sticky_name) == (2, 5, "APPID")
    args = build_parser().parse_args(["cluster", "add", "-i", "app"])
    plain = args.build(args).body
    assert (plain.connect_timeout, plain.back_timeout, plain.sticky_name) == (None, None, None)


# -- the worker's runtime ---------------------------------------------------------------------


def test_cluster_runtime_keeps_flat_overrides_and_falls_back_when_unset() -> None:
    runtime = ClusterRuntime(
        Cluster(cluster_id="app", connect_timeout=2, back_timeout=1, sticky_name="APPID")
    )
    assert (runtime.connect_timeout, runtime.back_timeout, runtime.sticky_name) == (
        2.0,
        1.0,
        b"APPID",
    )
    listener_back_timeout = 30.0
    assert (runtime.back_timeout or listener_back_timeout) == 1.0
    runtime.configure(Cluster(cluster_id="app"))  # an update without overrides
    assert (runtime.connect_timeout, runtime.back_timeout, runtime.sticky_name) == (0.0, 0.0, b"")
    assert (runtime.back_timeout or listener_back_timeout) == 30.0
