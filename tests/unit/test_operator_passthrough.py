"""`ssl-passthrough` in the operator (operator/passthrough.py): which hosts become passthrough
frontends, towards which Service, and what is said about the rest."""

from __future__ import annotations

from typing import Any

from ingress_operator.annotations import parse_annotations
from ingress_operator.model import ObjectKey
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_conformance import HTTP, HTTPS, route
from test_operator_render import go, ingress, rule, state_of

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
ECHO = "default/echo-service:80"
OTHER = "foo-bar-com"
PASS = {NGINX + "ssl-passthrough": "true"}


def passthrough(rendered: Rendered) -> dict[str, Any]:
    return {
        r.body.hostname: r.body
        for r in rendered.requests
        if r.verb == "add_https_frontend" and r.body.passthrough
    }


def problems(rendered: Rendered, reason: str) -> list[str]:
    return [p.message for p in rendered.problems if p.reason == reason]


def test_each_rule_host_passes_through_to_the_service_of_its_root_path() -> None:
    rules = [
        rule("argocd.example", ("/", "Prefix", "echo-service")),
        rule("*.apps.example", ("/", "ImplementationSpecific", "echo-service")),
    ]
    rendered = go(ingress("argo", rules, annotations=PASS), settings=ON)
    fronts = passthrough(rendered)
    assert sorted(fronts) == ["*.apps.example", "argocd.example"]
    front = fronts["argocd.example"]
    assert front.cluster_id == ECHO and front.address == HTTPS
    assert front.tags == {"namespace": "default", "ingress": "argo"}
    assert [r for r in rendered.requests if r.verb == "add_backend" and r.body.cluster_id == ECHO]
    assert rendered.cluster_owner[ECHO] == ObjectKey("default", "argo")
    # the plain HTTP routes stay, as ingress-nginx keeps serving the host on port 80
    assert route(rendered, HTTP, "argocd.example", "/").cluster_id == ECHO
    state = state_of(rendered)  # the dataplane state takes it
    assert any(f.passthrough for f in state.https_fronts.values())


def test_other_paths_are_ignored_and_said_so_and_a_host_without_root_is_not_passed() -> None:
    rules = [
        rule("a.example", ("/api", "Prefix", OTHER), ("/", "Prefix", "echo-service")),
        rule("b.example", ("/only", "Prefix", "echo-service")),
    ]
    rendered = go(ingress("argo", rules, annotations=PASS), settings=ON)
    assert list(passthrough(rendered)) == ["a.example"]
    assert passthrough(rendered)["a.example"].cluster_id == ECHO
    assert any("'/api'" in m for m in problems(rendered, "PassthroughPathIgnored"))
    assert any("b.example has no / path" in m for m in problems(rendered, "InvalidAnnotation"))


def test_the_nginx_key_needs_the_flag_and_the_pysozu_key_does_not() -> None:
    rules = [rule("a.example", ("/", "Prefix", "echo-service"))]
    assert not passthrough(go(ingress("x", rules, annotations=PASS)))
    pysozu = {"pysozu.io/ssl-passthrough": "true"}
    assert list(passthrough(go(ingress("x", rules, annotations=pysozu)))) == ["a.example"]
    assert not passthrough(
        go(ingress("x", rules, annotations={NGINX + "ssl-passthrough": "false"}), settings=ON)
    )


def test_the_key_is_read_and_not_reported_as_unsupported() -> None:
    options = parse_annotations(PASS, True)
    assert not options.problems
    assert not [n for n in options.notices if "ssl-passthrough" in n.message]
    options = parse_annotations({"pysozu.io/ssl-passthrough": "true"}, False)
    assert not options.problems


def test_a_bad_value_is_reported() -> None:
    rules = [rule("a.example", ("/", "Prefix", "echo-service"))]
    bad = {NGINX + "ssl-passthrough": "yes"}
    rendered = go(ingress("x", rules, annotations=bad), settings=ON)
    assert not passthrough(rendered)
    assert any("'yes' is not true or false" in m for m in problems(rendered, "InvalidAnnotation"))


def test_access_restrictions_fail_closed_no_passthrough() -> None:
    rules = [rule("a.example", ("/", "Prefix", "echo-service"))]
    for extra in (
        {NGINX + "whitelist-source-range": "10.0.0.0/8"},
        {NGINX + "limit-rps": "5"},
        {NGINX + "auth-tls-secret": "default/ca"},
    ):
        rendered = go(ingress("x", rules, annotations={**PASS, **extra}), settings=ON)
        assert not passthrough(rendered), extra
        assert problems(rendered, "PassthroughRefused"), extra


def test_other_http_annotations_apply_to_http_only_and_it_is_said() -> None:
    rules = [rule("a.example", ("/", "Prefix", "echo-service"))]
    annotations = {**PASS, NGINX + "proxy-read-timeout": "30"}
    rendered = go(ingress("x", rules, annotations=annotations), settings=ON)
    assert list(passthrough(rendered)) == ["a.example"]
    [message] = problems(rendered, "PassthroughHttpOnly")
    assert "proxy-read-timeout" in message
    assert [p.type for p in rendered.problems if p.reason == "PassthroughHttpOnly"] == ["Normal"]


def test_the_oldest_ingress_wins_a_host_and_hostless_rules_are_reported() -> None:
    older = ingress("old", [rule("a.example", ("/", "Prefix", "echo-service"))], annotations=PASS)
    newer = ingress(
        "new", [rule("a.example", ("/", "Prefix", OTHER)), rule(None, ("/", "Prefix", OTHER))],
        annotations=PASS, created="2026-01-02T00:00:00Z",
    )  # fmt: skip
    rendered = go(older, newer, settings=ON)
    assert passthrough(rendered)["a.example"].cluster_id == ECHO
    assert any("passed through by older Ingress" in m for m in problems(rendered, "Conflict"))
    assert any("without host" in m for m in problems(rendered, "InvalidAnnotation"))
