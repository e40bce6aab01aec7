"""Canary Ingresses (operator/canary.py): the annotations -> the rule, and the rule on the
main Ingress's frontends. Pure: no sockets, no kopf."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.canary import CanaryRule, parse_canary
from ingress_operator.claims import ingress_claims
from ingress_operator.model import ObjectKey
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_conformance import HTTP, HTTPS, route, snapshot_of
from test_operator_render import WEB, go, ingress, rule, state_of

from dataplane.command.messages import Canary

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
MAIN = "default/echo-service:80"
CANARY_SERVICE = "foo-bar-com"
CANARY_RULE = rule("web.example", ("/", "Prefix", CANARY_SERVICE))


def nginx(**names: str) -> dict[str, str]:
    return {NGINX + name.replace("_", "-"): value for name, value in names.items()}


def parsed(annotations: dict[str, str], nginx_on: bool = True) -> tuple[Any, list[str]]:
    problems: list[str] = []
    return parse_canary(annotations, nginx_on, problems), problems


# -- annotations -> rule ------------------------------------------------------------------------


def test_an_ingress_without_canary_keys_is_no_canary() -> None:
    assert parsed({NGINX + "rewrite-target": "/"}) == (None, [])


def test_every_key_reaches_the_rule() -> None:
    rule_, problems = parsed(
        nginx(canary="true", canary_by_header="X-Canary", canary_by_header_value="yes",
              canary_by_cookie="beta", canary_weight="30", canary_weight_total="1000")
    )  # fmt: skip
    assert problems == []
    assert rule_ == CanaryRule("X-Canary", "yes", None, "beta", 30, 1000)
    assert rule_.message("c") == Canary(
        cluster_id="c", header="X-Canary", header_value="yes", cookie="beta", weight=30,
        weight_total=1000,
    )  # fmt: skip


@pytest.mark.parametrize("flag", ["true", "True", "1", "t"])
def test_canary_true_as_go_reads_booleans(flag: str) -> None:
    assert parsed(nginx(canary=flag))[0] == CanaryRule()


def test_canary_keys_without_canary_true_are_reported_and_unused() -> None:
    rule_, problems = parsed(nginx(canary="false", canary_weight="10"))
    assert rule_ is None and "ignored without canary" in problems[0]
    rule_, problems = parsed(nginx(canary="yes"))
    assert rule_ is None and "'yes' is not true or false" in problems[0]


def test_the_pattern_is_ignored_when_a_value_is_set_as_ingress_nginx_says() -> None:
    rule_, problems = parsed(
        nginx(canary="true", canary_by_header="X", canary_by_header_value="a",
              canary_by_header_pattern="b.*")
    )  # fmt: skip
    assert rule_ == CanaryRule(header="X", header_value="a")
    assert "ignored, canary-by-header-value is set" in problems[0]


def test_value_or_pattern_without_header_is_reported() -> None:
    rule_, problems = parsed(nginx(canary="true", canary_by_header_pattern="b"))
    assert rule_ == CanaryRule() and "without canary-by-header" in problems[0]


def test_a_weight_total_below_100_is_100_as_the_balancer_uses_it() -> None:
    rule_, problems = parsed(nginx(canary="true", canary_weight="20", canary_weight_total="50"))
    assert rule_ == CanaryRule(weight=20, weight_total=100)
    assert "below 100" in problems[0]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("canary-weight", "-3", "not a whole number"),
        ("canary-weight", "ten", "not a whole number"),
        ("canary-by-header", "X Bad", "not a header name"),
        ("canary-by-cookie", "a=b", "not a cookie name"),
        ("canary-by-header-pattern", "(", "does not compile"),
    ],
)
def test_bad_values_are_named(name: str, value: str, message: str) -> None:
    annotations = {NGINX + "canary": "true", NGINX + "canary-by-header": "X", NGINX + name: value}
    rule_, problems = parsed(annotations)
    assert rule_ is not None
    assert any(NGINX + name in p and message in p for p in problems), problems


def test_pysozu_keys_win_and_nginx_keys_need_the_flag() -> None:
    both = {**nginx(canary="true", canary_weight="10"), "pysozu.io/canary-weight": "20"}
    assert parsed(both)[0] == CanaryRule(weight=20)
    assert parsed(nginx(canary="true"), nginx_on=False) == (None, [])
    assert parsed({"pysozu.io/canary": "true"}, nginx_on=False)[0] == CanaryRule()


def test_a_weight_above_the_total_is_every_request() -> None:
    assert parsed(nginx(canary="true", canary_weight="150"))[0] == CanaryRule(weight=100)


# -- rendering ----------------------------------------------------------------------------------


def main_and_canary(annotations: dict[str, str], **options: Any) -> Rendered:
    canary = ingress(
        "web-canary", options.pop("rules", [CANARY_RULE]), annotations=annotations,
        created="2026-01-02T00:00:00Z", **options,
    )  # fmt: skip
    return go(ingress("web", [WEB]), canary, settings=ON)


def canary_cluster(rendered: Rendered) -> str:
    ids = [r.body.cluster_id for r in rendered.requests if r.verb == "add_cluster"]
    found = [cid for cid in ids if CANARY_SERVICE in cid]
    assert len(found) == 1, ids
    return found[0]


def test_a_canary_ingress_joins_the_main_routes_on_http_and_https() -> None:
    rendered = main_and_canary(nginx(canary="true", canary_by_header="X-C", canary_weight="25"))
    cid = canary_cluster(rendered)
    for address in (HTTP, HTTPS):
        front = route(rendered, address, "web.example", "/anything")
        assert front.cluster_id == MAIN
        assert front.canary == Canary(cluster_id=cid, header="X-C", weight=25)
    assert "Conflict" not in [p.reason for p in rendered.problems]
    assert rendered.cluster_owner[cid] == ObjectKey("default", "web-canary")
    assert [r for r in rendered.requests if r.verb == "add_backend" and r.body.cluster_id == cid]
    state_of(rendered)  # the dataplane state takes it


def test_a_canary_without_a_main_route_serves_nothing_and_says_so() -> None:
    lost = rule("other.example", ("/", "Prefix", CANARY_SERVICE))
    rendered = main_and_canary(nginx(canary="true", canary_weight="50"), rules=[lost])
    assert route(rendered, HTTP, "other.example", "/") is None
    assert route(rendered, HTTP, "web.example", "/").canary is None
    messages = [p.message for p in rendered.problems if p.reason == "Canary"]
    assert any("other.example/: no main Ingress serves it" in m for m in messages), messages


def test_only_the_oldest_canary_of_a_route_is_attached() -> None:
    first = ingress("c1", [CANARY_RULE], annotations=nginx(canary="true", canary_weight="10"),
                    created="2026-01-02T00:00:00Z")  # fmt: skip
    second = ingress("c2", [CANARY_RULE], annotations=nginx(canary="true", canary_weight="90"),
                     created="2026-01-03T00:00:00Z")  # fmt: skip
    rendered = go(ingress("web", [WEB]), second, first, settings=ON)
    assert route(rendered, HTTP, "web.example", "/").canary.weight == 10
    late = [p for p in rendered.problems if p.ingress == ObjectKey("default", "c2")]
    assert any("older canary Ingress default/c1 has it" in p.message for p in late)


def test_other_annotations_of_a_canary_are_ignored_and_reported() -> None:
    annotations = nginx(canary="true", canary_weight="10", ssl_redirect="false",
                        load_balance="ewma", whitelist_source_range="10.0.0.0/8")  # fmt: skip
    rendered = main_and_canary(annotations)
    front = route(rendered, HTTP, "web.example", "/")
    assert front.allowed_sources == []  # the main Ingress's access rules, none here
    messages = [p.message for p in rendered.problems if p.reason == "Canary"]
    assert any("ssl-redirect" in m and "whitelist-source-range" in m for m in messages)
    assert not any("load-balance" in m for m in messages)  # kept: it shapes the canary cluster
    cid = canary_cluster(rendered)
    cluster = next(r.body for r in rendered.requests if r.verb == "add_cluster"
                   and r.body.cluster_id == cid)  # fmt: skip
    assert cluster.load_metric is not None  # ewma: least loaded by connection time


def test_a_canary_failing_closed_is_not_attached() -> None:
    rendered = main_and_canary(nginx(canary="true", canary_weight="50", auth_type="basic"))
    assert route(rendered, HTTP, "web.example", "/").canary is None
    assert any("cannot enforce" in p.message for p in rendered.problems if p.reason == "Canary")


def test_no_canary_on_a_main_route_that_fails_closed() -> None:
    main = ingress("web", [WEB], annotations=nginx(auth_type="basic"))
    canary = ingress("c", [CANARY_RULE], annotations=nginx(canary="true", canary_weight="50"),
                     created="2026-01-02T00:00:00Z")  # fmt: skip
    rendered = go(main, canary, settings=ON)
    assert route(rendered, HTTP, "web.example", "/").canary is None
    assert any("does not forward it" in p.message for p in rendered.problems)


def test_a_canary_claims_no_route_so_the_webhook_sees_no_conflict() -> None:
    canary = ingress("c", [CANARY_RULE], annotations=nginx(canary="true"))
    snapshot = snapshot_of([canary])
    body = next(iter(snapshot.ingresses.values()))
    assert list(ingress_claims(body, ON)) == []
    assert list(ingress_claims(body, RenderSettings())) != []  # flag off: a plain Ingress


def test_the_canary_cluster_takes_its_own_affinity_and_the_main_its_own() -> None:
    annotations = nginx(canary="true", affinity="cookie", session_cookie_name="CANARY")
    rendered = main_and_canary(annotations)
    clusters = {r.body.cluster_id: r.body for r in rendered.requests if r.verb == "add_cluster"}
    canary = clusters[canary_cluster(rendered)]
    assert canary.sticky_session and canary.sticky_name == "CANARY"
    assert not clusters[MAIN].sticky_session
    messages = [p.message for p in rendered.problems if p.reason == "Canary"]
    assert not any("session-cookie-name" in m or "affinity" in m for m in messages), messages
