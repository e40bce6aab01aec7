"""The admission webhook's judgements that read the controller's indices: host/path claims of
other Ingresses (claims.ClaimIndex), use-regex paths, and TLS Secrets with
--webhook-require-tls-secrets. AdmissionReview documents with Ingress objects built from the
Kubernetes client's own types; no sockets."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
import trustme
from ingress_operator.claims import ClaimIndex
from ingress_operator.indices import INGRESSES, Indices
from ingress_operator.model import (
    Ingress,
    IngressClass,
    ObjectKey,
    Snapshot,
    parse_ingress,
    parse_tls_secret,
)
from ingress_operator.render import render
from ingress_operator.settings import RenderSettings
from ingress_operator.webhook import USE_REGEX, Context, regex_error, review
from kubernetes import client as k8s
from test_operator_webhook import admission_review, ingress_object

OURS = "pysozu.io/ingress-controller"
CLASSES = {
    "pysozu": IngressClass("pysozu", OURS, False),
    "nginx": IngressClass("nginx", "k8s.io/ingress-nginx", False),
}
SETTINGS = RenderSettings(nginx_annotations=True)
Path = tuple[str, str, str, str]  # host, path, pathType, service


def ingress(
    name: str,
    paths: list[Path],
    *,
    age: int = 0,
    class_name: str = "pysozu",
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    default_service: str | None = None,
) -> dict[str, Any]:
    """An Ingress created `age` minutes after 2024-01-01 (older ones win claims)."""
    created = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(minutes=age)

    def backend(service: str) -> k8s.V1IngressBackend:
        port = k8s.V1ServiceBackendPort(number=80)
        return k8s.V1IngressBackend(service=k8s.V1IngressServiceBackend(name=service, port=port))

    rules = [
        k8s.V1IngressRule(
            host=host,
            http=k8s.V1HTTPIngressRuleValue(
                paths=[k8s.V1HTTPIngressPath(path=path, path_type=kind, backend=backend(service))]
            ),
        )
        for host, path, kind, service in paths
    ]
    obj = k8s.V1Ingress(
        api_version="networking.k8s.io/v1",
        kind="Ingress",
        metadata=k8s.V1ObjectMeta(
            name=name,
            namespace=namespace,
            uid=f"uid-{name}",
            creation_timestamp=created,
            annotations=annotations,
        ),
        spec=k8s.V1IngressSpec(
            ingress_class_name=class_name,
            rules=rules,
            default_backend=backend(default_service) if default_service else None,
        ),
    )
    body: dict[str, Any] = k8s.ApiClient().sanitize_for_serialization(obj)
    return body


class World:
    """Indices holding some Ingresses, a ClaimIndex over them, the webhook's context."""

    def __init__(self, *bodies: dict[str, Any], require_tls: bool = False) -> None:
        self.indices = Indices()
        self.indices.classes.update(CLASSES)
        for body in bodies:
            self.indices.apply(INGRESSES, "ADDED", body)
        self.indices.settle()
        indices = self.indices
        self.claims = ClaimIndex(
            lambda: indices.ingresses, lambda: indices.classes, indices.routing_version, SETTINGS
        )
        self.context = Context(
            settings=SETTINGS,
            classes=lambda: indices.classes,
            secrets=lambda: indices.secrets,
            conflicts=self.claims.conflicts,
            require_tls_secrets=require_tls,
        )

    def judge(self, body: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
        response: dict[str, Any] = json.loads(
            review(admission_review(body, operation), self.context)
        )["response"]
        return response


def message(response: dict[str, Any]) -> str:
    assert response["allowed"] is False
    text: str = response["status"]["message"]
    return text


# -- host/path conflicts ----------------------------------------------------------------------


def test_a_route_served_by_another_ingress_with_another_backend_is_refused() -> None:
    world = World(ingress("first", [("a.example", "/api", "Prefix", "api")]))
    text = message(
        world.judge(ingress("second", [("a.example", "/api", "Prefix", "other")], age=5))
    )
    assert "route a.example/api is already served by Ingress default/first" in text
    assert "backend default/api:80" in text


def test_the_same_route_to_the_same_backend_is_no_conflict() -> None:
    world = World(ingress("first", [("a.example", "/api", "Prefix", "api")]))
    assert world.judge(ingress("second", [("a.example", "/api", "Prefix", "api")], age=5))[
        "allowed"
    ]


@pytest.mark.parametrize(
    "path",
    [
        ("b.example", "/api", "Prefix", "other"),  # another host
        ("a.example", "/api/v2", "Prefix", "other"),  # a deeper path: longest prefix wins
        ("a.example", "/api", "Exact", "other"),  # the Ingress API's tie rule: Exact wins
    ],
)
def test_routes_that_do_not_clash_are_allowed(path: Path) -> None:
    world = World(ingress("first", [("a.example", "/api", "Prefix", "api")]))
    assert world.judge(ingress("second", [path], age=5))["allowed"] is True


def test_exact_paths_clash_with_exact_and_prefix_paths_render_their_equal_rule() -> None:
    """Prefix /api renders EQUALS /api and PREFIX /api/: an Exact /api of another backend
    wins the tie (allowed), an Exact /api/ meets nothing; two Exact /api clash."""
    world = World(ingress("first", [("a.example", "/api", "Exact", "api")]))
    refused = world.judge(ingress("second", [("a.example", "/api", "Exact", "x")], age=5))
    assert "a.example/api is already served" in message(refused)


def test_an_update_of_the_owner_itself_is_allowed() -> None:
    first = ingress("first", [("a.example", "/api", "Prefix", "api")])
    world = World(first)
    changed = ingress("first", [("a.example", "/api", "Prefix", "api-v2")])
    assert world.judge(changed, "UPDATE")["allowed"] is True


def test_an_older_ingress_taking_a_route_from_a_younger_one_is_refused() -> None:
    world = World(
        ingress("old", [("a.example", "/", "Prefix", "web")]),
        ingress("young", [("b.example", "/", "Prefix", "api")], age=5),
    )
    update = ingress("old", [("b.example", "/", "Prefix", "web")])
    assert "b.example/ is already served by Ingress default/young" in message(
        world.judge(update, "UPDATE")
    )


def test_a_route_claimed_twice_in_one_ingress_is_refused() -> None:
    world = World()
    body = ingress(
        "twice", [("a.example", "/x", "Prefix", "one"), ("a.example", "/x", "Prefix", "two")]
    )
    assert "route a.example/x is claimed twice in this Ingress" in message(world.judge(body))


def test_default_backends_clash() -> None:
    world = World(ingress("first", [], default_service="web"))
    text = message(world.judge(ingress("second", [], age=5, default_service="other")))
    assert "route defaultBackend is already served by Ingress default/first" in text


def test_other_classes_neither_claim_nor_are_judged() -> None:
    world = World(ingress("nginx-one", [("a.example", "/", "Prefix", "x")], class_name="nginx"))
    assert world.judge(ingress("ours", [("a.example", "/", "Prefix", "y")], age=5))["allowed"]
    world = World(ingress("ours", [("a.example", "/", "Prefix", "y")]))
    other = ingress("nginx-two", [("a.example", "/", "Prefix", "x")], age=5, class_name="nginx")
    assert world.judge(other)["allowed"] is True


def test_the_index_is_rebuilt_only_when_ingresses_change() -> None:
    world = World(ingress("first", [("a.example", "/", "Prefix", "web")]))
    candidate = ingress("second", [("a.example", "/", "Prefix", "api")], age=5)
    for _ in range(5):
        assert world.judge(candidate)["allowed"] is False
    assert world.claims.builds == 1
    world.indices.apply(INGRESSES, "DELETED", ingress("first", []))
    assert world.judge(candidate)["allowed"] is True
    assert world.claims.builds == 2


def _conflicts_rendered(bodies: list[dict[str, Any]]) -> set[ObjectKey]:
    parsed: dict[ObjectKey, Ingress] = {}
    for body in bodies:
        value = parse_ingress(body)
        parsed[value.key] = value
    rendered = render(Snapshot(ingresses=parsed, classes=dict(CLASSES)), SETTINGS)
    return {p.ingress for p in rendered.problems if p.reason == "Conflict"}


@pytest.mark.parametrize(
    "paths",
    [
        [("a.example", "/", "Prefix", "x")],
        [("a.example", "/", "Prefix", "web")],
        [("a.example", "/api", "Exact", "x")],
        [("a.example", "/api/", "Exact", "x")],
        [("a.example", "/api", "ImplementationSpecific", "x")],
        [("a.example", "/api/", "ImplementationSpecific", "x")],
        [("a.example", "/api/v1", "Prefix", "x"), ("b.example", "/", "Prefix", "x")],
        [("*.b.example", "/", "Prefix", "x")],
        [("a.example", "/", "Prefix", "x"), ("a.example", "/", "Prefix", "y")],
    ],
)
def test_the_webhook_refuses_exactly_what_the_rendering_reports_as_a_conflict(
    paths: list[Path],
) -> None:
    existing = [
        ingress(
            "web", [("a.example", "/", "Prefix", "web"), ("a.example", "/api", "Prefix", "api")]
        )
    ]
    candidate = ingress("new", paths, age=5)
    refused = not World(*existing).judge(candidate)["allowed"]
    assert refused == (ObjectKey("default", "new") in _conflicts_rendered([*existing, candidate]))


# -- use-regex paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "compiles"),
    [
        ("/api/v[0-9]+", True),
        ("/a(b", False),
        ("/x{1,1001}", False),
        ("/[z-a]", False),
        ("/(?!admin)", False),  # lookahead: RE2 (sozu's regex syntax) has none
    ],
)
def test_regex_errors_are_those_of_the_dataplanes_compiler(pattern: str, compiles: bool) -> None:
    assert (regex_error(pattern) is None) is compiles


def test_a_use_regex_path_that_does_not_compile_is_refused() -> None:
    world = World()
    bad = ingress(
        "re",
        [("a.example", "/api/(v1", "ImplementationSpecific", "x")],
        annotations={USE_REGEX: "true"},
    )
    text = message(world.judge(bad))
    assert "rules[0].http.paths[0]: use-regex path '/api/(v1' does not compile" in text
    good = ingress(
        "re",
        [("a.example", "/api/v[0-9]+", "ImplementationSpecific", "x")],
        annotations={USE_REGEX: "true"},
    )
    assert world.judge(good)["allowed"] is True
    literal = ingress("re", [("a.example", "/api/(v1", "ImplementationSpecific", "x")])
    assert world.judge(literal)["allowed"] is True  # without use-regex: a literal prefix


# -- TLS Secrets ----------------------------------------------------------------------------------


def _with_tls(secret: str) -> dict[str, Any]:
    tls = [k8s.V1IngressTLS(hosts=["app.example"], secret_name=secret)]
    return ingress_object(tls=tls)


def _secret(name: str, pair: trustme.LeafCert | None) -> dict[str, Any]:

    data = {}
    if pair is not None:
        data = {
            "tls.crt": base64.b64encode(pair.cert_chain_pems[0].bytes()).decode(),
            "tls.key": base64.b64encode(pair.private_key_pem.bytes()).decode(),
        }
    return {"metadata": {"namespace": "default", "name": name, "uid": name}, "data": data}


def test_a_missing_tls_secret_is_refused_only_when_required() -> None:
    lenient, strict = World(), World(require_tls=True)
    assert lenient.judge(_with_tls("app-tls"))["allowed"] is True
    text = message(strict.judge(_with_tls("app-tls")))
    assert "tls[0]: TLS Secret default/app-tls not found (--webhook-require-tls-secrets)" in text
    pair = trustme.CA().issue_cert("app.example")
    for world in (lenient, strict):
        world.indices.secrets[ObjectKey("default", "app-tls")] = parse_tls_secret(
            _secret("app-tls", pair)
        )
        assert world.judge(_with_tls("app-tls")) == {"uid": _UID, "allowed": True}


def test_an_unusable_tls_secret_is_a_warning_or_when_required_a_refusal() -> None:
    broken = parse_tls_secret(_secret("app-tls", None))
    lenient, strict = World(), World(require_tls=True)
    for world in (lenient, strict):
        world.indices.secrets[ObjectKey("default", "app-tls")] = broken
    warned = lenient.judge(_with_tls("app-tls"))
    assert warned["allowed"] is True and "TLS secret default/app-tls" in warned["warnings"][0]
    assert "TLS secret default/app-tls: needs at least one CERTIFICATE" in message(
        strict.judge(_with_tls("app-tls"))
    )


_UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
