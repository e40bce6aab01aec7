"""The sticky cookie's attributes (a pysozu extension: sozu sends `Path=/` only): the state's
checks, the TOML table, the CLI flags, and the Set-Cookie value the hot path renders."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.codec import decode, encode
from dataplane.command.config import ConfigError, parse_config
from dataplane.command.messages import AddBackend, Cluster, Request, StickyCookie
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError
from dataplane.proxy.clusters import ClusterRuntime
from dataplane.proxy.mux.backend_choice import sticky_cookie

pytestmark = pytest.mark.timeout(10)

CONFIG = """
[[listeners]]
protocol = "http"
address = "127.0.0.1:8080"

[clusters.app]
protocol = "http"
sticky_session = true
frontends = [{{ address = "127.0.0.1:8080", hostname = "example.com" }}]
backends = [{{ address = "127.0.0.1:9000" }}]
{extra}
"""


def runtime_and_backend(cookie: StickyCookie | None) -> tuple[ClusterRuntime, Any]:
    runtime = ClusterRuntime(Cluster(cluster_id="app", sticky_session=True, sticky_cookie=cookie))
    address = SocketAddress.parse("127.0.0.1:9000")
    backend = runtime.backends.add(
        AddBackend(cluster_id="app", backend_id="app-0", address=address, sticky_id="b1")
    )
    return runtime, backend


def value(cookie: StickyCookie | None, scheme: str = "http") -> str:
    runtime, backend = runtime_and_backend(cookie)
    return sticky_cookie(runtime, backend, None, b"SOZUBALANCEID", scheme == "https").decode()


def test_without_attributes_the_cookie_is_sozus() -> None:
    assert value(None) == "SOZUBALANCEID=b1; Path=/"
    assert value(None, "https") == "SOZUBALANCEID=b1; Path=/"


def test_every_attribute_in_order() -> None:
    cookie = StickyCookie(
        path="/app",
        domain="example.com",
        max_age=3600,
        same_site="Lax",
        http_only=True,
        secure="always",
    )
    assert value(cookie) == (
        "SOZUBALANCEID=b1; Path=/app; Domain=example.com; Max-Age=3600; SameSite=Lax; "
        "HttpOnly; Secure"
    )


def test_secure_on_https_only_when_asked() -> None:
    cookie = StickyCookie(secure="https")
    assert value(cookie, "http") == "SOZUBALANCEID=b1; Path=/"
    assert value(cookie, "https") == "SOZUBALANCEID=b1; Path=/; Secure"


def test_expires_is_a_date_that_many_seconds_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dataplane.proxy.mux.backend_choice.time", lambda: 1_800_000_000.0)
    assert value(StickyCookie(expires=60)) == (
        "SOZUBALANCEID=b1; Path=/; Expires=Fri, 15 Jan 2027 08:01:00 GMT"
    )


def test_no_cookie_when_the_client_already_names_the_backend() -> None:
    runtime, backend = runtime_and_backend(StickyCookie(max_age=1))
    assert sticky_cookie(runtime, backend, "b1", b"S", False) == b""


@pytest.mark.parametrize(
    ("cookie", "message"),
    [
        (StickyCookie(path="app"), "must start with /"),
        (StickyCookie(path="/a;b"), "must start with /"),
        (StickyCookie(domain="a\r\nb"), "domain"),
        (StickyCookie(same_site="lax"), "same_site"),
        (StickyCookie(secure="yes"), "secure"),
        (StickyCookie(max_age=10**12), "max_age"),
    ],
)
def test_the_state_refuses_what_would_break_the_header(cookie: StickyCookie, message: str) -> None:
    state = ConfigState()
    with pytest.raises(StateError, match=message):
        state.dispatch(Request.of(add_cluster=Cluster(cluster_id="app", sticky_cookie=cookie)))


def test_the_wire_format_round_trips() -> None:
    cluster = Cluster(cluster_id="app", sticky_cookie=StickyCookie(path="/x", expires=5))
    request = Request.of(add_cluster=cluster)
    assert decode(encode(request), Request) == request


def test_the_toml_table() -> None:
    extra = """[clusters.app.sticky_cookie]
path = "/app"
max_age = 60
same_site = "Strict"
secure = "https"
http_only = true
"""
    config = parse_config(CONFIG.format(extra=extra), "config.toml")
    (cluster,) = [c.cluster for c in config.clusters.values()]
    assert cluster.sticky_cookie == StickyCookie(
        path="/app", max_age=60, same_site="Strict", secure="https", http_only=True
    )


def test_the_toml_table_refuses_bad_and_unknown_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.format(extra='[clusters.app.sticky_cookie]\nsame_site = "x"'), "c")
    assert any("same_site" in p.message for p in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.format(extra="[clusters.app.sticky_cookie]\nsecrue = 1"), "c")
    assert any(p.key == "secrue" or "secrue" in p.message for p in caught.value.problems)


def test_the_cli_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["cluster", "add", "--id", "app", "--sticky-session", "--sticky-cookie-max-age", "30",
         "--sticky-cookie-same-site", "None", "--sticky-cookie-secure", "always",
         "--sticky-cookie-http-only"]
    )  # fmt: skip
    assert args.build(args).body.sticky_cookie == StickyCookie(
        max_age=30, same_site="None", secure="always", http_only=True
    )
    args = parser.parse_args(["cluster", "add", "--id", "app"])
    assert args.build(args).body.sticky_cookie is None
