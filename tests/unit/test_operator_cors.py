"""ingress-nginx's CORS annotations -> the frontends' CORS policy (operator/cors_annotations.py).
Pure: no sockets, no kopf."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_conformance import HTTP, HTTPS, answer, route
from test_operator_render import WEB, go, ingress, state_of

from dataplane.command.messages import CorsPolicy

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
ENABLE = {NGINX + "enable-cors": "true"}


def front(rendered: Rendered, address: Any = HTTP, path: str = "/") -> Any:
    found = route(rendered, address, "web.example", path)
    assert found is not None
    return found


def web(annotations: dict[str, str], settings: RenderSettings = ON) -> Rendered:
    return go(ingress("web", [WEB], annotations=annotations), settings=settings)


def messages(rendered: Rendered) -> list[str]:
    return [p.message for p in rendered.problems]


def test_enable_cors_alone_gives_ingress_nginxs_defaults_on_every_route() -> None:
    rendered = web(ENABLE)
    for address in (HTTP, HTTPS):
        assert front(rendered, address, "/deep").cors == CorsPolicy()
    assert rendered.problems == []
    state_of(rendered)  # the dataplane's own checks accept it


def test_every_key_is_mapped() -> None:
    rendered = web(
        ENABLE
        | {
            NGINX
            + "cors-allow-origin": "https://app.example.com, https://*.example.org:8443, null",
            NGINX + "cors-allow-methods": "GET, POST,OPTIONS",
            NGINX + "cors-allow-headers": "X-Token,Content-Type",
            NGINX + "cors-expose-headers": "*, X-Total",
            NGINX + "cors-allow-credentials": "false",
            NGINX + "cors-max-age": "600",
        }
    )
    assert front(rendered).cors == CorsPolicy(
        allow_origins=["https://app.example.com", "https://*.example.org:8443", "null"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["X-Token", "Content-Type"],
        expose_headers=["*", "X-Total"],
        allow_credentials=False,
        max_age=600,
    )
    assert rendered.problems == []
    state_of(rendered)


def test_a_star_anywhere_means_every_origin() -> None:
    rendered = web(ENABLE | {NGINX + "cors-allow-origin": "https://a.com, *"})
    assert front(rendered).cors.allow_origins == ["*"]


def test_bad_origins_are_left_out_and_reported_and_none_left_means_off() -> None:
    rendered = web(ENABLE | {NGINX + "cors-allow-origin": "https://a.com, a.com, http://"})
    assert front(rendered).cors.allow_origins == ["https://a.com"]
    assert len(rendered.problems) == 2
    assert all(p.reason == "InvalidAnnotation" for p in rendered.problems)
    assert "'a.com' is not *, null" in messages(rendered)[0]
    rendered = web(ENABLE | {NGINX + "cors-allow-origin": "$http_origin"})
    assert front(rendered).cors is None  # never widened to *, unlike ingress-nginx
    assert any("CORS is off" in m for m in messages(rendered))


@pytest.mark.parametrize(
    ("name", "value", "field", "default"),
    [
        ("cors-allow-methods", "GET;rm", "allow_methods", CorsPolicy().allow_methods),
        ("cors-allow-methods", "GET POST", "allow_methods", CorsPolicy().allow_methods),
        ("cors-allow-headers", "X-A\r\nX-B: 1", "allow_headers", CorsPolicy().allow_headers),
        ("cors-allow-headers", "$http_x", "allow_headers", CorsPolicy().allow_headers),
        ("cors-expose-headers", "X-A; b", "expose_headers", []),
        ("cors-allow-credentials", "yes", "allow_credentials", True),
        ("cors-max-age", "-5", "max_age", 1_728_000),
        ("cors-max-age", "10m", "max_age", 1_728_000),
    ],
)
def test_a_bad_value_is_reported_and_the_default_applies(
    name: str, value: str, field: str, default: object
) -> None:
    rendered = web(ENABLE | {NGINX + name: value})
    assert getattr(front(rendered).cors, field) == default
    [problem] = rendered.problems
    assert problem.reason == "InvalidAnnotation" and NGINX + name in problem.message
    state_of(rendered)


def test_go_booleans_and_a_bad_enable_means_off() -> None:
    assert front(web({NGINX + "enable-cors": "True"})).cors == CorsPolicy()
    assert front(web({NGINX + "enable-cors": "0"})).cors is None
    rendered = web({NGINX + "enable-cors": "yes"})
    assert front(rendered).cors is None
    assert "is not true or false" in messages(rendered)[0]


def test_cors_keys_without_enable_cors_are_reported() -> None:
    rendered = web({NGINX + "cors-allow-origin": "https://a.com"})
    assert front(rendered).cors is None
    [problem] = rendered.problems
    assert "has no effect without enable-cors" in problem.message


def test_pysozu_keys_work_without_the_flag_and_win_over_nginx_twins() -> None:
    rendered = web({"pysozu.io/enable-cors": "true"}, RenderSettings())
    assert front(rendered).cors == CorsPolicy()
    assert rendered.problems == []
    both = {
        "pysozu.io/enable-cors": "true",
        "pysozu.io/cors-max-age": "5",
        NGINX + "cors-max-age": "7",
    }
    assert front(web(both)).cors.max_age == 5


def test_without_the_flag_nginx_keys_are_not_read() -> None:
    rendered = web(ENABLE, RenderSettings())
    assert front(rendered).cors is None
    assert any("--nginx-annotations is off" in m for m in messages(rendered))


def test_redirecting_routes_carry_it_and_app_root_and_refused_ones_do_not() -> None:
    rendered = web(ENABLE | {NGINX + "force-ssl-redirect": "true", NGINX + "app-root": "/app"})
    assert answer(rendered, HTTP, "web.example", "/deep") == "308 https"
    assert front(rendered, HTTP, "/deep").cors == CorsPolicy()
    root = [
        r.body
        for r in rendered.requests
        if r.verb == "add_http_frontend" and r.body.path.value == "/" and r.body.redirect
    ]
    assert root and all(body.cors is None for body in root if body.redirect_template)
    refused = web(ENABLE | {NGINX + "auth-type": "basic"})
    assert front(refused).cors is None
