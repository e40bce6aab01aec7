"""ingress-nginx's access annotations -> the frontends' source lists, rate limits and body
size (operator/access_annotations.py). Pure: no sockets, no kopf."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.access_annotations import body_size, networks
from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.cli import parser, settings_from
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_conformance import HTTP, HTTPS, answer, route
from test_operator_render import WEB, go, ingress, state_of

from dataplane.command.messages import ConnectionLimit, RateLimit

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
SERVED = "default/echo-service:80"
REFUSED = "default/web:-refused"


def front(rendered: Rendered, address: Any = HTTP, path: str = "/") -> Any:
    found = route(rendered, address, "web.example", path)
    assert found is not None
    return found


def web(annotations: dict[str, str], settings: RenderSettings = ON) -> Rendered:
    return go(ingress("web", [WEB], annotations=annotations), settings=settings)


def reasons(rendered: Rendered) -> list[tuple[str, str]]:
    return [(p.type, p.reason) for p in rendered.problems]


# -- source ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.0/8", ("10.0.0.0/8",)),
        ("10.0.0.1/8", ("10.0.0.0/8",)),  # host bits cleared, as Go's net.ParseCIDR does
        (" 192.168.1.7 , 2001:db8::1/32", ("192.168.1.7/32", "2001:db8::/32")),
        ("::ffff:192.0.2.1", ("192.0.2.1/32",)),  # the dataplane unwraps mapped clients
        ("10.0.0.0/8,10.0.0.0/8", ("10.0.0.0/8",)),
    ],
)
def test_networks_are_normalised_as_ingress_nginx_does(value: str, expected: tuple[str]) -> None:
    assert networks(value) == expected


@pytest.mark.parametrize(
    "value", ["", "10.0.0.0/8,", "10.0.0.0/33", "example.com", "010.0.0.1", "10.0.0.0/255.0.0.0"]
)
def test_a_bad_network_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or network"):
        networks(value)


def test_allowlist_and_denylist_reach_every_route_of_the_ingress() -> None:
    annotations = {
        NGINX + "whitelist-source-range": "10.0.0.0/8, 192.168.0.1",
        NGINX + "denylist-source-range": "10.1.0.0/16",
    }
    rendered = web(annotations)
    for address in (HTTP, HTTPS):
        found = front(rendered, address, "/deep")
        assert found.cluster_id == SERVED
        assert found.allowed_sources == ["10.0.0.0/8", "192.168.0.1/32"]
        assert found.denied_sources == ["10.1.0.0/16"]
    assert rendered.problems == [] and rendered.refused == frozenset()
    state_of(rendered)  # the dataplane's own rules accept them


def test_allowlist_wins_over_its_whitelist_alias_which_is_reported() -> None:
    annotations = {
        NGINX + "allowlist-source-range": "10.0.0.0/8",
        NGINX + "whitelist-source-range": "192.168.0.0/16",
    }
    rendered = web(annotations)
    assert front(rendered).allowed_sources == ["10.0.0.0/8"]
    [problem] = rendered.problems
    assert problem.reason == "InvalidAnnotation" and "whitelist-source-range" in problem.message


def test_an_empty_allowlist_falls_back_to_the_alias() -> None:
    annotations = {
        NGINX + "allowlist-source-range": "",
        NGINX + "whitelist-source-range": "10.0.0.0/8",
    }
    assert front(web(annotations)).allowed_sources == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    "name", ["whitelist-source-range", "allowlist-source-range", "denylist-source-range"]
)
@pytest.mark.parametrize("value", ["10.0.0.0/8,nonsense", ""])
def test_an_invalid_source_range_fails_closed_naming_the_value(name: str, value: str) -> None:
    rendered = web({NGINX + name: value})
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    [problem] = rendered.problems
    assert (problem.type, problem.reason) == ("Warning", NOT_ENFORCED)
    assert NGINX + name in problem.message and "503" in problem.message
    assert repr("nonsense" if value else "") in problem.message


def test_without_the_nginx_flag_source_ranges_fail_closed_and_pysozu_keys_work() -> None:
    rendered = web({NGINX + "whitelist-source-range": "10.0.0.0/8"}, RenderSettings())
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    assert "--nginx-annotations is off" in rendered.problems[0].message
    rendered = web({"pysozu.io/allowlist-source-range": "10.0.0.0/8"}, RenderSettings())
    assert front(rendered).allowed_sources == ["10.0.0.0/8"]
    assert rendered.problems == []


def test_a_pysozu_key_wins_over_its_nginx_twin() -> None:
    annotations = {
        "pysozu.io/denylist-source-range": "10.0.0.0/8",
        NGINX + "denylist-source-range": "192.168.0.0/16",
    }
    assert front(web(annotations)).denied_sources == ["10.0.0.0/8"]


def test_default_backend_and_redirecting_routes_get_the_source_lists_too() -> None:
    default = {"service": {"name": "echo-service", "port": {"number": 80}}}
    body = ingress(
        "web",
        [WEB],
        default=default,
        annotations={
            NGINX + "allowlist-source-range": "10.0.0.0/8",
            NGINX + "force-ssl-redirect": "true",
        },
    )
    rendered = go(body, settings=ON)
    assert answer(rendered, HTTP, "web.example", "/") == "308 https"
    assert front(rendered).allowed_sources == ["10.0.0.0/8"]  # a refused client learns nothing
    other = route(rendered, HTTP, "other.example", "/")
    assert other.cluster_id == SERVED and other.allowed_sources == ["10.0.0.0/8"]


def test_routes_of_other_ingresses_are_untouched() -> None:
    other = ingress("other", [WEB | {"host": "other.example"}])
    closed = ingress("web", [WEB], annotations={NGINX + "allowlist-source-range": "10.0.0.0/8"})
    rendered = go(closed, other, settings=ON)
    plain = route(rendered, HTTP, "other.example", "/")
    assert plain.allowed_sources == [] and plain.rate_limits == []
    assert plain.max_body_size is None


# -- rate limits --------------------------------------------------------------------------------


def test_limit_rps_and_rpm_are_two_limits_with_burst_as_ingress_nginx_computes_it() -> None:
    annotations = {
        NGINX + "limit-rps": "10",
        NGINX + "limit-rpm": "120",
        NGINX + "limit-burst-multiplier": "3",
        NGINX + "limit-whitelist": "10.0.0.1, 192.168.0.0/16",
    }
    exempt = ["10.0.0.1/32", "192.168.0.0/16"]
    assert front(web(annotations), HTTPS).rate_limits == [
        RateLimit(rate=10.0, burst=30, status=503, exempt_sources=exempt, zone=ZONE),
        RateLimit(rate=2.0, burst=360, status=503, exempt_sources=exempt, zone=ZONE),
    ]  # one zone per Ingress: its routes count a client once, as ingress-nginx


ZONE = "default/web"


def test_the_default_burst_multiplier_is_5_and_the_status_the_controllers() -> None:
    settings = RenderSettings(nginx_annotations=True, limit_req_status=429)
    rendered = web({NGINX + "limit-rps": "4"}, settings)
    assert front(rendered).rate_limits == [RateLimit(rate=4.0, burst=20, status=429, zone=ZONE)]
    state_of(rendered)


def test_a_zero_limit_is_no_limit() -> None:
    rendered = web({NGINX + "limit-rps": "0"})
    assert front(rendered).rate_limits == [] and rendered.problems == []


@pytest.mark.parametrize("value", ["1.5", "-1", "10r/s", "", "99999999999999999999"])
@pytest.mark.parametrize("name", ["limit-rps", "limit-rpm"])
def test_a_bad_rate_fails_closed(name: str, value: str) -> None:
    rendered = web({NGINX + name: value})
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    assert reasons(rendered) == [("Warning", NOT_ENFORCED)]


def test_a_bad_exempt_list_fails_closed() -> None:
    rendered = web({NGINX + "limit-rps": "5", NGINX + "limit-allowlist": "10.0.0.0/8,x"})
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED


def test_a_bad_multiplier_means_5_and_is_reported() -> None:
    rendered = web({NGINX + "limit-rps": "2", NGINX + "limit-burst-multiplier": "lots"})
    assert front(rendered).rate_limits == [RateLimit(rate=2.0, burst=10, zone=ZONE)]
    assert reasons(rendered) == [("Warning", "InvalidAnnotation")]


def test_limit_options_without_a_limit_are_reported_and_change_nothing() -> None:
    rendered = web({NGINX + "limit-whitelist": "10.0.0.0/8"})
    assert front(rendered).rate_limits == []
    assert reasons(rendered) == [("Warning", "InvalidAnnotation")]
    assert "has no effect" in rendered.problems[0].message


def test_limit_connections_is_a_connection_limit_in_the_ingress_zone() -> None:
    annotations = {NGINX + "limit-connections": "2", NGINX + "limit-whitelist": "10.0.0.0/8"}
    rendered = web({**annotations, NGINX + "limit-rps": "5"})
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    expected = ConnectionLimit(
        max_concurrent_per_client=2, exempt_sources=["10.0.0.0/8"], zone="default/web"
    )
    for address in (HTTP, HTTPS):
        assert front(rendered, address).connection_limit == expected
    assert front(rendered).rate_limits[0].exempt_sources == ["10.0.0.0/8"]
    assert rendered.problems == []
    alone = web({NGINX + "limit-connections": "3"})  # without a rate limit
    assert front(alone).connection_limit.max_concurrent_per_client == 3
    assert front(alone).rate_limits == []
    ours = web({"pysozu.io/limit-connections": "4"}, RenderSettings())  # without the flag
    assert front(ours).connection_limit.max_concurrent_per_client == 4
    assert front(web({NGINX + "limit-connections": "0"})).connection_limit is None
    burst = web({NGINX + "limit-connections": "3", NGINX + "limit-burst-multiplier": "2"})
    assert ["limit-rps or limit-rpm" in p.message for p in burst.problems] == [True]
    assert front(web({NGINX + "limit-connections": "2"}, RenderSettings())).connection_limit is None


@pytest.mark.parametrize("value", ["", "two", "-1", "1.5"])
def test_a_bad_connection_limit_fails_closed(value: str) -> None:
    rendered = web({NGINX + "limit-connections": value})
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    assert reasons(rendered) == [("Warning", NOT_ENFORCED)]
    assert NGINX + "limit-connections" in rendered.problems[0].message


def test_the_status_flag_takes_429_or_503_only() -> None:
    args = parser().parse_args(["--command-socket", "s", "--limit-req-status-code", "429"])
    assert settings_from(args).render.limit_req_status == 429
    with pytest.raises(SystemExit):
        parser().parse_args(["--command-socket", "s", "--limit-req-status-code", "418"])


# -- body size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("0", 0),
        ("100", 100),
        ("512k", 512 * 1024),
        ("8m", 8 << 20),
        ("1G", 1 << 30),
        (" 2M ", 2 << 20),
    ],
)
def test_nginx_sizes(value: str, size: int) -> None:
    assert body_size(value) == size


@pytest.mark.parametrize("value", ["", "1.5m", "10b", "1t", "-1", "m", "99999999999999999999g"])
def test_bad_sizes(value: str) -> None:
    with pytest.raises(ValueError):
        body_size(value)


def test_proxy_body_size_sets_the_limit_and_0_lifts_the_controllers() -> None:
    assert front(web({NGINX + "proxy-body-size": "8m"})).max_body_size == 8 << 20
    settings = RenderSettings(nginx_annotations=True, proxy_body_size=1 << 20)
    assert front(web({}, settings)).max_body_size == 1 << 20  # the controller's default
    lifted = front(web({NGINX + "proxy-body-size": "0"}, settings))
    assert lifted.max_body_size is None  # no access settings at all: a plain route


def test_a_bad_size_is_reported_and_the_controller_default_applies() -> None:
    settings = RenderSettings(nginx_annotations=True, proxy_body_size=1 << 20)
    rendered = web({NGINX + "proxy-body-size": "lots"}, settings)
    assert front(rendered).max_body_size == 1 << 20
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    [problem] = rendered.problems
    assert problem.reason == "InvalidAnnotation" and "'lots'" in problem.message


def test_the_body_size_flag_reads_nginx_sizes() -> None:
    args = parser().parse_args(["--command-socket", "s", "--proxy-body-size", "1m"])
    assert settings_from(args).render.proxy_body_size == 1 << 20
    with pytest.raises(SystemExit):
        parser().parse_args(["--command-socket", "s", "--proxy-body-size", "big"])
