"""ingress-nginx's temporal-redirect / permanent-redirect (+ -code) rendered onto the
dataplane: a backendless cluster per Ingress holding the answer template, its routes pointing
at it. Pure: no sockets, no kopf."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.model import ObjectKey
from ingress_operator.redirects import TEMPLATE, redirect_cluster_id
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_conformance import HTTP, backends
from test_operator_render import TLS_RULE, WEB, go, ingress, rule, state_of

from dataplane.command.messages import RedirectPolicy
from dataplane.proxy.answers.responses import compile_template

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
CID = "default/web:-redirect"
URL = "https://new.example/landing?from=old"


def fronts(rendered: Rendered) -> list[Any]:
    return [r.body for r in rendered.requests if r.verb.endswith("_frontend")]


def cluster(rendered: Rendered, cid: str) -> Any:
    return next(
        r.body for r in rendered.requests if r.verb == "add_cluster" and r.body.cluster_id == cid
    )


def redirect_of(annotations: dict[str, str]) -> tuple[int, str] | None:
    """(status, Location) every route of the Ingress answers, or None when it forwards."""
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=ON)
    fronts_ = fronts(rendered)
    if fronts_[0].cluster_id != CID:
        return None
    assert {(f.redirect_template, f.cluster_id) for f in fronts_} == {(TEMPLATE, CID)}
    template = compile_template(TEMPLATE, cluster(rendered, CID).answers[TEMPLATE])
    data = template.render({}).decode()
    status = int(data.split(" ")[1])
    location = next(
        line.split(": ", 1)[1] for line in data.split("\r\n") if line.startswith("Location: ")
    )
    return status, location


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"permanent-redirect": URL}, (301, URL)),
        ({"permanent-redirect": URL, "permanent-redirect-code": "308"}, (308, URL)),
        ({"permanent-redirect": URL, "permanent-redirect-code": "418"}, (301, URL)),  # default
        ({"temporal-redirect": URL}, (302, URL)),
        ({"temporal-redirect": URL, "temporal-redirect-code": "307"}, (307, URL)),
        ({"temporal-redirect": URL, "permanent-redirect": "https://x.example/"}, (302, URL)),
        ({"permanent-redirect": "http://plain.example"}, (301, "http://plain.example")),
    ],
)
def test_redirect_annotations_answer_as_ingress_nginx(
    annotations: dict[str, str], expected: tuple[int, str]
) -> None:
    assert redirect_of({NGINX + k: v for k, v in annotations.items()}) == expected


@pytest.mark.parametrize(
    ("annotations", "expected", "message"),
    [
        ({"permanent-redirect": "ftp://x.example/"}, None, "is not an http(s) URL"),
        ({"permanent-redirect": "https://x.example$request_uri"}, None, "nginx variables"),
        ({"permanent-redirect": "https://a.example/\r\nX: y"}, None, "is not an http(s) URL"),
        ({"permanent-redirect": URL, "permanent-redirect-code": "300"}, (301, URL), "body"),
        ({"permanent-redirect": URL, "permanent-redirect-code": "x"}, (301, URL), "not a number"),
        ({"permanent-redirect-code": "308"}, None, "has no effect"),
        ({"temporal-redirect": URL, "permanent-redirect": URL}, (302, URL), "wins"),
    ],
)
def test_what_cannot_be_honoured_is_reported(
    annotations: dict[str, str], expected: tuple[int, str] | None, message: str
) -> None:
    annotated = {NGINX + k: v for k, v in annotations.items()}
    assert redirect_of(annotated) == expected
    rendered = go(ingress("web", [WEB], annotations=annotated), settings=ON)
    [problem] = rendered.problems
    assert problem.reason == "InvalidAnnotation" and message in problem.message


def test_the_redirect_comes_before_the_https_one_and_the_cluster_has_no_backend() -> None:
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    body = ingress("web", [TLS_RULE], tls=tls, annotations={NGINX + "permanent-redirect": URL})
    rendered = go(body, settings=ON)
    by_verb = {r.verb: r.body for r in rendered.requests if r.verb.endswith("_frontend")}
    for front in by_verb.values():
        assert (front.cluster_id, front.redirect) == (CID, RedirectPolicy.PERMANENT)
        assert front.redirect_scheme is None and front.redirect_template == TEMPLATE
    assert set(by_verb) == {"add_http_frontend", "add_https_frontend"}
    assert backends(rendered, CID) == []
    assert redirect_cluster_id(ObjectKey("default", "web")) == CID


def test_without_the_flag_nothing_redirects() -> None:
    body = ingress("web", [WEB], annotations={NGINX + "permanent-redirect": URL})
    assert {f.cluster_id for f in fronts(go(body))} == {"default/echo-service:80"}


def test_fail_closed_wins_over_a_redirect() -> None:
    annotations = {NGINX + "permanent-redirect": URL, NGINX + "global-rate-limit": "1"}
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=ON)
    assert {(f.cluster_id, f.redirect) for f in fronts(rendered)} == {
        ("default/web:-refused", None)
    }


def test_the_redirect_state_is_accepted_and_removed_with_the_annotation() -> None:
    body = ingress("web", [WEB], annotations={NGINX + "temporal-redirect": URL})
    state = state_of(go(body, settings=ON))
    assert CID in state.clusters
    fixed = state_of(go(ingress("web", [WEB]), settings=ON))
    assert [r.body for r in state.diff(fixed) if r.verb == "remove_cluster"] == [CID]


# -- upstream-vhost ---------------------------------------------------------------------------


def test_upstream_vhost_rewrites_the_host_of_forwarding_routes_only() -> None:
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    body = ingress(
        "web", [TLS_RULE], tls=tls, annotations={NGINX + "upstream-vhost": "app.internal"}
    )
    rendered = go(body, settings=ON)
    by_verb = {r.verb: r.body for r in rendered.requests if r.verb.endswith("_frontend")}
    assert by_verb["add_https_frontend"].rewrite_host == "app.internal"
    http = by_verb["add_http_frontend"]  # the 308 to HTTPS keeps the client's host
    assert (http.redirect, http.rewrite_host) == (RedirectPolicy.PERMANENT_REDIRECT, None)
    assert rendered.problems == []
    assert {f.rewrite_host for f in fronts(go(body))} == {None}  # not without the flag


@pytest.mark.parametrize("value", ["$service_name.svc", "a b", "x.example/path", ""])
def test_an_upstream_vhost_that_is_not_a_host_is_reported(value: str) -> None:
    body = ingress("web", [WEB], annotations={NGINX + "upstream-vhost": value})
    rendered = go(body, settings=ON)
    assert [p.reason for p in rendered.problems] == ["InvalidAnnotation"]
    assert {f.rewrite_host for f in fronts(rendered)} == {None}


# -- app-root ---------------------------------------------------------------------------------


def app_root_answers(rendered: Rendered) -> dict[str, tuple[int, str]]:
    """Template name -> (status, Location) in the app-root cluster."""
    answers = cluster(rendered, "default/web:-app-root").answers
    out = {}
    for name, text in answers.items():
        data = compile_template(name, text).render({}).decode()
        location = next(h.split(": ", 1)[1] for h in data.split("\r\n") if h.startswith("Location"))
        out[name] = (int(data.split(" ")[1]), location)
    return out


def test_app_root_redirects_exactly_slash_on_every_host_and_scheme() -> None:
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    rules = [TLS_RULE, WEB]
    body = ingress("web", rules, tls=tls, annotations={NGINX + "app-root": "/app/"})
    rendered = go(body, settings=ON)
    assert rendered.problems == []
    assert app_root_answers(rendered) == {
        "app-root http://foo.bar.com": (302, "http://foo.bar.com/app/"),
        "app-root https://foo.bar.com": (302, "https://foo.bar.com/app/"),
        "app-root http://web.example": (302, "http://web.example/app/"),
        "app-root https://web.example": (302, "https://web.example/app/"),
    }
    slash = [f for f in fronts(rendered) if f.path.value == "/" and f.path.kind.name == "EQUALS"]
    assert sorted((f.hostname, f.redirect_template, f.redirect) for f in slash) == [
        ("foo.bar.com", "app-root http://foo.bar.com", RedirectPolicy.FOUND),  # before the 308
        ("foo.bar.com", "app-root https://foo.bar.com", RedirectPolicy.FOUND),
        ("web.example", "app-root http://web.example", RedirectPolicy.FOUND),
        ("web.example", "app-root https://web.example", RedirectPolicy.FOUND),
    ]
    # Deeper paths still reach the Service.
    others = {f.cluster_id for f in fronts(rendered) if f.path.kind.name != "EQUALS"}
    assert others == {"default/echo-service:80"}


def test_app_root_wins_over_the_ingress_own_exact_slash_and_its_redirect() -> None:
    rules = [rule("web.example", ("/", "Exact", "echo-service"), ("/x", "Prefix", "echo-service"))]
    annotations = {NGINX + "app-root": "/app", NGINX + "permanent-redirect": URL}
    rendered = go(ingress("web", rules, annotations=annotations), settings=ON)
    assert rendered.problems == []
    http = [f for f in fronts(rendered) if f.address == HTTP]
    by_path = {(f.path.kind.name, f.path.value): f for f in http}
    assert by_path[("EQUALS", "/")].redirect_template == "app-root http://web.example"
    assert by_path[("PREFIX", "/x/")].redirect_template == TEMPLATE


@pytest.mark.parametrize(
    ("host", "value", "message"),
    [
        (None, "/app", "no fixed host"),
        ("*.web.example", "/app", "no fixed host"),
        ("web.example", "app", "not a path"),
        ("web.example", "/$request_uri", "nginx variables"),
    ],
)
def test_app_root_that_cannot_be_honoured_is_reported(
    host: str | None, value: str, message: str
) -> None:
    body = ingress(
        "web",
        [rule(host, ("/", "Prefix", "echo-service"))],
        annotations={NGINX + "app-root": value},
    )
    rendered = go(body, settings=ON)
    [problem] = rendered.problems
    assert problem.reason == "InvalidAnnotation" and message in problem.message
    assert {f.redirect_template for f in fronts(rendered)} == {None}


def test_app_root_of_a_refused_ingress_is_not_rendered() -> None:
    annotations = {NGINX + "app-root": "/app", NGINX + "global-rate-limit": "1"}
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=ON)
    assert {f.cluster_id for f in fronts(rendered)} == {"default/web:-refused"}
