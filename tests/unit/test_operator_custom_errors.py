"""ingress-nginx's custom-http-errors -> each route's custom_errors, served by the Ingress's
default-backend Service (operator/custom_errors_annotations.py). Not a restriction: what
cannot be served is reported and the routes serve as they are."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.custom_errors_annotations import parse_custom_errors
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from test_operator_conformance import HTTP, HTTPS, route
from test_operator_render import go, ingress
from test_operator_upstream import backends, endpoints, service

from dataplane.command.messages import CustomErrors

pytestmark = pytest.mark.timeout(20)

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
RULE = {
    "host": "web.example",
    "http": {
        "paths": [
            {
                "path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": "app", "port": {"number": 80}}},
            }
        ]
    },
}
OBJECTS = (service("app"), endpoints("app", "10.0.0.1"), service("errors", port=8080))
OBJECTS += (endpoints("errors", "10.0.9.9", port=9000),)


def web(annotations: dict[str, str], settings: RenderSettings = ON) -> Rendered:
    return go(ingress("web", [RULE], annotations=annotations), *OBJECTS, settings=settings)


def front(rendered: Rendered, address: Any = HTTP) -> Any:
    found = route(rendered, address, "web.example", "/")
    assert found is not None
    return found


def test_codes_are_served_by_the_default_backend_service() -> None:
    annotations = {
        NGINX + "custom-http-errors": "404, 503,404",
        NGINX + "default-backend": "errors",
    }
    rendered = web(annotations)
    expected = CustomErrors(
        codes=[404, 503],
        cluster_id="default/errors:8080",
        headers={
            "X-Namespace": "default",
            "X-Ingress-Name": "web",
            "X-Service-Name": "app",
            "X-Service-Port": "80",
        },
    )
    for address in (HTTP, HTTPS):
        assert front(rendered, address).custom_errors == expected
        assert front(rendered, address).cluster_id == "default/app:80"
    assert backends(rendered, "default/errors:8080") == ["10.0.9.9:9000"]
    assert backends(rendered, "default/app:80") == ["10.0.0.1:8080"]
    assert rendered.problems == []
    ours = {"pysozu.io/custom-http-errors": "502", "pysozu.io/default-backend": "errors"}
    assert front(web(ours, RenderSettings())).custom_errors.codes == [502]


def test_without_a_default_backend_it_is_reported_and_served_as_it_is() -> None:
    rendered = web({NGINX + "custom-http-errors": "404"})
    assert front(rendered).custom_errors is None
    assert front(rendered).cluster_id == "default/app:80"  # not failing closed
    [problem] = rendered.problems
    assert (problem.type, problem.reason) == ("Warning", "InvalidAnnotation")
    assert "no default-backend" in problem.message
    missing = web({NGINX + "custom-http-errors": "404", NGINX + "default-backend": "nope"})
    assert front(missing).custom_errors is None
    assert any("default/nope not found" in p.message for p in missing.problems)


@pytest.mark.parametrize("value", ["", "404,abc", "200", "404,", "1000"])
def test_a_bad_value_is_reported_and_nothing_is_intercepted(value: str) -> None:
    annotations = {NGINX + "custom-http-errors": value, NGINX + "default-backend": "errors"}
    rendered = web(annotations)
    assert front(rendered).custom_errors is None
    assert front(rendered).cluster_id == "default/app:80"
    assert [p.reason for p in rendered.problems] == ["InvalidAnnotation"]
    assert "custom-http-errors" in rendered.problems[0].message


def test_the_parser_alone() -> None:
    def find(value: str) -> Any:
        return lambda name: (NGINX + name, value) if name == "custom-http-errors" else None

    assert parse_custom_errors(find("503")).codes == (503,)
    assert parse_custom_errors(lambda name: None).codes is None
    assert parse_custom_errors(find("x")).problems


def test_without_the_flag_the_nginx_key_is_not_read() -> None:
    annotations = {NGINX + "custom-http-errors": "404", NGINX + "default-backend": "errors"}
    assert front(web(annotations, RenderSettings())).custom_errors is None
