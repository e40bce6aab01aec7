"""Rendering rules beyond the conformance suite: classes, hosts, paths, ports, endpoints, TLS,
conflicts, annotations, and what a change diffs to. Pure: no sockets, no kopf."""

from __future__ import annotations

from typing import Any

import pytest
from ingress_operator.ingress_semantics import SemanticError, normalize_host, path_rules
from ingress_operator.model import ObjectKey, Snapshot
from ingress_operator.render import Rendered, render
from ingress_operator.settings import RenderSettings
from test_operator_conformance import BASE, HTTP, HTTPS, NOT_FOUND, answer, backends, load

from dataplane.command.messages import (
    LoadBalancingAlgorithms,
    LoadMetric,
    PathRule,
    PathRuleKind,
    RulePosition,
)
from dataplane.command.state import ConfigState

SETTINGS = RenderSettings()
OURS = "pysozu.io/ingress-controller"


def ingress(
    name: str,
    rules: list[dict[str, Any]] | None = None,
    *,
    namespace: str = "default",
    created: str = "2026-01-01T00:00:00Z",
    class_name: str | None = "pysozu",
    annotations: dict[str, str] | None = None,
    default: dict[str, Any] | None = None,
    tls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": rules or []}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if default is not None:
        spec["defaultBackend"] = default
    if tls is not None:
        spec["tls"] = tls
    metadata = {"namespace": namespace, "name": name, "creationTimestamp": created}
    if annotations:
        metadata["annotations"] = annotations
    return {"kind": "Ingress", "metadata": metadata, "spec": spec}


def backend(service: str, port: int | str = 80) -> dict[str, Any]:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": service, "port": {key: port}}}


def rule(host: str | None, *paths: tuple[str, str, str]) -> dict[str, Any]:
    entries = [
        {"path": path, "pathType": path_type, "backend": backend(service)}
        for path, path_type, service in paths
    ]
    body: dict[str, Any] = {"http": {"paths": entries}}
    if host is not None:
        body["host"] = host
    return body


def go(*bodies: dict[str, Any], settings: RenderSettings = SETTINGS) -> Rendered:
    return render(load(*BASE, extra=list(bodies)), settings)


def reasons(rendered: Rendered) -> list[str]:
    return [p.reason for p in rendered.problems]


def ingress_class(name: str, controller: str, default: bool = False) -> dict[str, Any]:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    metadata = {"name": name, "annotations": annotations}
    return {"kind": "IngressClass", "metadata": metadata, "spec": {"controller": controller}}


# -- class matching ---------------------------------------------------------------------------

KEY = ObjectKey("default", "web")
WEB = rule("web.example", ("/", "Prefix", "echo-service"))


@pytest.mark.parametrize(
    ("body", "extra", "settings", "served"),
    [
        (ingress("web", [WEB]), [], SETTINGS, True),
        (ingress("web", [WEB], class_name="nginx"), [], SETTINGS, False),
        (ingress("web", [WEB], class_name="missing"), [], SETTINGS, False),
        (ingress("web", [WEB], class_name=None), [], SETTINGS, False),
        (
            ingress("web", [WEB], class_name=None),
            [],
            RenderSettings(watch_ingress_without_class=True),
            True,
        ),
        (  # our class is the default: class-less Ingresses are ours
            ingress("web", [WEB], class_name=None),
            [ingress_class("pysozu", OURS, default=True)],
            SETTINGS,
            True,
        ),
        (  # another controller's class is the default
            ingress("web", [WEB], class_name=None),
            [ingress_class("nginx", "k8s.io/ingress-nginx", default=True)],
            SETTINGS,
            False,
        ),
        (  # the legacy annotation, with our --ingress-class value
            ingress(
                "web", [WEB], class_name=None, annotations={"kubernetes.io/ingress.class": "pysozu"}
            ),
            [],
            SETTINGS,
            True,
        ),
        (  # the legacy annotation wins over ingressClassName
            ingress("web", [WEB], annotations={"kubernetes.io/ingress.class": "nginx"}),
            [],
            SETTINGS,
            False,
        ),
        (
            ingress("web", [WEB], class_name="custom"),
            [ingress_class("custom", OURS)],
            SETTINGS,
            True,
        ),
    ],
)
def test_class_matching(
    body: dict[str, Any], extra: list[dict[str, Any]], settings: RenderSettings, served: bool
) -> None:
    rendered = go(body, *extra, settings=settings)
    assert (KEY in rendered.served) is served
    expected = "default/echo-service:80" if served else NOT_FOUND
    assert answer(rendered, HTTP, "web.example", "/") == expected


# -- hosts and paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [(None, "*"), ("", "*"), ("Web.Example.COM", "web.example.com"), ("*.Foo.com", "*.foo.com")],
)
def test_hosts_are_lowercased(raw: str | None, normal: str) -> None:
    assert normalize_host(raw) == normal


@pytest.mark.parametrize("raw", ["*.com", "a.*.com", "foo..com", "-a.com", "a b.com", "*"])
def test_invalid_hosts_are_refused(raw: str) -> None:
    with pytest.raises(SemanticError):
        normalize_host(raw)


P, E = PathRuleKind.PREFIX, PathRuleKind.EQUALS


@pytest.mark.parametrize(
    ("path_type", "path", "rules"),
    [
        ("Exact", "/foo", [(E, "/foo")]),
        ("Exact", "/foo/", [(E, "/foo/")]),
        ("Prefix", "/", [(P, "/")]),
        ("Prefix", "/foo", [(E, "/foo"), (P, "/foo/")]),
        ("Prefix", "/foo/", [(E, "/foo"), (P, "/foo/")]),
        ("Prefix", "/foo//", [(E, "/foo"), (P, "/foo/")]),
        ("ImplementationSpecific", "/foo", [(P, "/foo")]),
        ("ImplementationSpecific", "", [(P, "/")]),
    ],
)
def test_path_types_map_to_dataplane_rules(
    path_type: str, path: str, rules: list[tuple[PathRuleKind, str]]
) -> None:
    expected = tuple(PathRule(kind=kind, value=value) for kind, value in rules)
    assert path_rules(path_type, path) == expected


@pytest.mark.parametrize(
    ("path_type", "path"),
    [("Exact", "foo"), ("Prefix", "foo"), ("Wildcard", "/foo"), ("", "/"), ("Exact", "/a b")],
)
def test_invalid_paths_are_refused(path_type: str, path: str) -> None:
    with pytest.raises(SemanticError):
        path_rules(path_type, path)


def test_invalid_rules_become_events_and_the_rest_is_served() -> None:
    bad = ingress(
        "web",
        [
            rule("bad host!", ("/", "Prefix", "echo-service")),
            rule(
                "web.example", ("nope", "Prefix", "echo-service"), ("/ok", "Exact", "echo-service")
            ),
        ],
    )
    rendered = go(bad)
    assert reasons(rendered) == ["InvalidHost", "InvalidPath"]
    assert answer(rendered, HTTP, "web.example", "/ok") == "default/echo-service:80"


def test_hostless_rules_match_any_host_and_implementation_specific_is_a_string_prefix() -> None:
    rendered = go(ingress("web", [rule(None, ("/api", "ImplementationSpecific", "echo-service"))]))
    assert answer(rendered, HTTP, "any.example", "/api") == "default/echo-service:80"
    assert answer(rendered, HTTP, "other", "/apix") == "default/echo-service:80"
    assert answer(rendered, HTTP, "other", "/ap") == NOT_FOUND


def test_exact_host_beats_wildcard_beats_hostless() -> None:
    rendered = go(
        ingress(
            "web",
            [
                rule("a.example.com", ("/", "Prefix", "foo-exact")),
                rule("*.example.com", ("/", "Prefix", "foo-prefix")),
                rule(None, ("/", "Prefix", "echo-service")),
            ],
        )
    )
    assert answer(rendered, HTTP, "a.example.com", "/") == "default/foo-exact:80"
    assert answer(rendered, HTTP, "b.example.com", "/") == "default/foo-prefix:80"
    assert answer(rendered, HTTP, "elsewhere.org", "/") == "default/echo-service:80"


def test_default_backend_is_a_catch_all_after_the_rules() -> None:
    rendered = go(
        ingress("web", [WEB], default=backend("foo-exact")),
    )
    assert answer(rendered, HTTP, "web.example", "/x") == "default/echo-service:80"
    assert answer(rendered, HTTP, "other.example", "/x") == "default/foo-exact:80"
    (post,) = [
        r.body
        for r in rendered.requests
        if r.verb == "add_http_frontend" and r.body.position == RulePosition.POST
    ]
    assert (post.hostname, post.path.value) == ("*", "")


def test_resource_backends_are_reported() -> None:
    body = ingress("web")
    body["spec"]["defaultBackend"] = {"resource": {"apiGroup": "x", "kind": "Bucket", "name": "b"}}
    assert reasons(go(body)) == ["InvalidIngress"]


# -- services, ports, endpoints ---------------------------------------------------------------


def service(name: str, ports: list[dict[str, Any]], type_: str = "ClusterIP") -> dict[str, Any]:
    meta = {"namespace": "default", "name": name}
    return {"kind": "Service", "metadata": meta, "spec": {"type": type_, "ports": ports}}


def endpoint_slice(
    name: str, service_name: str, ports: list[dict[str, Any]], endpoints: list[dict[str, Any]],
    address_type: str = "IPv4",
) -> dict[str, Any]:  # fmt: skip
    labels = {"kubernetes.io/service-name": service_name}
    return {
        "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": name, "labels": labels},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }


def ep(ip: str, ready: bool | None = True, pod: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        body["conditions"] = {"ready": ready}
    if pod:
        body["targetRef"] = {"kind": "Pod", "name": pod}
    return body


APP_SERVICE = service("app", [{"name": "web", "port": 80}, {"name": "admin", "port": 81}])
APP_SLICE = endpoint_slice(
    "app-1",
    "app",
    [{"name": "web", "port": 8080}, {"name": "admin", "port": 9090}],
    [ep("10.0.0.1"), ep("10.0.0.2", ready=False), ep("10.0.0.3", ready=None), ep("10.0.0.1")],
)


@pytest.mark.parametrize(("port", "cluster"), [(80, "default/app:80"), ("web", "default/app:web")])
def test_service_ports_by_number_and_name_resolve_to_ready_endpoints(
    port: int | str, cluster: str
) -> None:
    body = ingress(
        "web",
        [
            {
                "host": "app.example",
                "http": {
                    "paths": [{"path": "/", "pathType": "Prefix", "backend": backend("app", port)}]
                },
            }
        ],
    )
    rendered = go(body, APP_SERVICE, APP_SLICE)
    assert answer(rendered, HTTP, "app.example", "/") == cluster
    # not ready excluded, unknown readiness included, duplicates once; the target port is used
    assert backends(rendered, cluster) == ["10.0.0.1:8080", "10.0.0.3:8080"]
    assert reasons(rendered) == []


def test_ipv6_endpoints_and_several_slices() -> None:
    second = endpoint_slice(
        "app-2", "app", [{"name": "web", "port": 8080}], [ep("fd00::1")], "IPv6"
    )
    body = ingress("web", [rule("app.example", ("/", "Prefix", "app"))])
    rendered = go(body, APP_SERVICE, APP_SLICE, second)
    assert backends(rendered, "default/app:80") == [
        "10.0.0.1:8080",
        "10.0.0.3:8080",
        "[fd00::1]:8080",
    ]


def conditioned(ip: str, **conditions: bool | None) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions}


def backup_flags(rendered: Rendered, cluster_id: str) -> dict[str, bool]:
    """address -> backup, for the backends of a cluster."""
    return {
        str(r.body.address): bool(r.body.backup)
        for r in rendered.requests
        if r.verb == "add_backend" and r.body.cluster_id == cluster_id
    }


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"ready": True}, False),
        ({}, False),  # unknown readiness: ready (API convention)
        ({"ready": None, "serving": None, "terminating": None}, False),
        ({"ready": True, "serving": True, "terminating": False}, False),
        ({"ready": False}, None),  # starting, or failing its readiness probe
        ({"ready": False, "serving": False, "terminating": False}, None),
        ({"ready": False, "serving": True, "terminating": True}, True),  # draining
        ({"ready": False, "terminating": True}, None),  # serving unknown: ready's value
        ({"ready": False, "serving": False, "terminating": True}, None),
        ({"ready": True, "terminating": True}, True),  # hand-made: serving, terminating
    ],
)
def test_endpoint_conditions_in_rotation_draining_or_out(
    conditions: dict[str, bool | None], expected: bool | None
) -> None:
    """expected: False in rotation, True a backup backend (draining), None not a backend."""
    slice_ = endpoint_slice(
        "app-1", "app", [{"name": "web", "port": 8080}], [conditioned("10.0.0.9", **conditions)]
    )
    body = ingress("web", [rule("app.example", ("/", "Prefix", "app"))])
    flags = backup_flags(go(body, APP_SERVICE, slice_), "default/app:80")
    assert flags == ({} if expected is None else {"10.0.0.9:8080": expected})


def test_terminating_endpoints_are_backups_beside_the_ready_ones() -> None:
    """A rolling update: the old pod drains (no new requests while a ready one exists, the
    requests under way finish); the same address ready in another slice wins."""
    first = endpoint_slice(
        "app-1",
        "app",
        [{"name": "web", "port": 8080}],
        [
            conditioned("10.0.0.1", ready=True, serving=True, terminating=False),
            conditioned("10.0.0.2", ready=False, serving=True, terminating=True),
            conditioned("10.0.0.3", ready=False, serving=True, terminating=True),
        ],
    )
    second = endpoint_slice(
        "app-2", "app", [{"name": "web", "port": 8080}], [conditioned("10.0.0.3", ready=True)]
    )
    body = ingress("web", [rule("app.example", ("/", "Prefix", "app"))])
    flags = backup_flags(go(body, APP_SERVICE, first, second), "default/app:80")
    assert flags == {"10.0.0.1:8080": False, "10.0.0.2:8080": True, "10.0.0.3:8080": False}


def test_an_endpoint_starting_to_drain_diffs_to_one_backend_upsert() -> None:
    """ready -> terminating: the backend stays (an upsert marks it backup), never removed and
    re-added, so connections to it are left alone."""
    body = ingress("web", [rule("app.example", ("/", "Prefix", "app"))])

    def state(**conditions: bool) -> ConfigState:
        slice_ = endpoint_slice(
            "app-1", "app", [{"name": "web", "port": 8080}], [conditioned("10.0.0.1", **conditions)]
        )
        return state_of(go(body, APP_SERVICE, slice_))

    before = state(ready=True, serving=True, terminating=False)
    after = state(ready=False, serving=True, terminating=True)
    requests = before.diff(after)
    assert [r.verb for r in requests] == ["add_backend"]
    assert requests[0].body.backup is True


@pytest.mark.parametrize(
    ("extra", "port", "reason"),
    [
        ([], 80, "ServiceNotFound"),
        ([APP_SERVICE], 8443, "PortNotFound"),
        ([APP_SERVICE], "nope", "PortNotFound"),
        ([service("app", [{"port": 80}], "ExternalName")], 80, "Unsupported"),
    ],
)
def test_unresolvable_backends_get_an_event_and_an_empty_cluster(
    extra: list[dict[str, Any]], port: int | str, reason: str
) -> None:
    body = ingress(
        "web",
        [
            {
                "host": "app.example",
                "http": {
                    "paths": [{"path": "/", "pathType": "Prefix", "backend": backend("app", port)}]
                },
            }
        ],
    )
    rendered = go(body, *extra)
    assert reasons(rendered) == [reason]
    cluster = f"default/app:{port}"
    assert answer(rendered, HTTP, "app.example", "/") == cluster  # routed: the dataplane says 503
    assert backends(rendered, cluster) == []


def test_services_are_looked_up_in_the_ingress_namespace() -> None:
    body = ingress("web", [rule("app.example", ("/", "Prefix", "echo-service"))], namespace="other")
    rendered = go(body)
    assert reasons(rendered) == ["ServiceNotFound"]
    assert answer(rendered, HTTP, "app.example", "/") == "other/echo-service:80"


# -- TLS --------------------------------------------------------------------------------------

TLS_RULE = rule("foo.bar.com", ("/", "Prefix", "echo-service"))


def certificates(rendered: Rendered) -> list[tuple[str, list[str]]]:
    return [
        (r.body.certificate.certificate[-80:], r.body.certificate.names)
        for r in rendered.requests
        if r.verb == "add_certificate"
    ]


@pytest.mark.parametrize(
    ("secret", "namespace"),
    [("missing", "default"), ("broken-tls", "default"), ("conformance-tls", "other")],
)
def test_unusable_tls_secrets_are_reported_and_do_not_redirect(secret: str, namespace: str) -> None:
    body = ingress(
        "web",
        [TLS_RULE],
        namespace=namespace,
        tls=[{"hosts": ["foo.bar.com"], "secretName": secret}],
    )
    rendered = go(body)
    assert "InvalidTLS" in reasons(rendered)
    assert certificates(rendered) == []
    assert answer(rendered, HTTP, "foo.bar.com", "/") != "308 https"


def test_one_secret_for_several_ingresses_is_one_certificate_with_all_names() -> None:
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    other = [{"hosts": ["Www.Bar.com"], "secretName": "conformance-tls"}]
    rendered = go(
        ingress("a", [TLS_RULE], tls=tls),
        ingress("b", [rule("www.bar.com", ("/", "Prefix", "echo-service"))], tls=other),
    )
    assert [names for _, names in certificates(rendered)] == [["foo.bar.com", "www.bar.com"]]
    assert answer(rendered, HTTP, "www.bar.com", "/") == "308 https"


def test_tls_host_conflict_oldest_wins() -> None:
    rendered = go(
        ingress(
            "new",
            [],
            created="2026-02-01T00:00:00Z",
            tls=[{"hosts": ["foo.bar.com"], "secretName": "other-tls"}],
        ),
        ingress(
            "old",
            [TLS_RULE],
            created="2026-01-01T00:00:00Z",
            tls=[{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}],
        ),
    )
    assert [(p.ingress.name, p.reason) for p in rendered.problems] == [("new", "Conflict")]
    snapshot = load(*BASE)
    old_cert = snapshot.secrets[ObjectKey("default", "conformance-tls")].certificate
    # Only the winner's certificate: the loser's would compete for the same name.
    assert certificates(rendered) == [(old_cert[-80:], ["foo.bar.com"])]


@pytest.mark.parametrize(
    ("annotations", "host", "expected"),
    [
        ({}, "foo.bar.com", "308 https"),
        ({"pysozu.io/ssl-redirect": "false"}, "foo.bar.com", "default/echo-service:80"),
        ({}, "plain.example", "default/echo-service:80"),
        ({"pysozu.io/force-ssl-redirect": "true"}, "plain.example", "308 https"),
    ],
)
def test_http_to_https_redirect(annotations: dict[str, str], host: str, expected: str) -> None:
    rules = [TLS_RULE, rule("plain.example", ("/", "Prefix", "echo-service"))]
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    rendered = go(ingress("web", rules, tls=tls, annotations=annotations))
    assert answer(rendered, HTTP, host, "/") == expected
    # HTTPS serves every host, as ingress-nginx does (plain.example: the default certificate).
    assert answer(rendered, HTTPS, host, "/") == "default/echo-service:80"


# -- conflicts --------------------------------------------------------------------------------


def test_route_conflict_oldest_wins_and_the_loser_gets_an_event() -> None:
    newer = ingress(
        "newer",
        [rule("web.example", ("/", "Prefix", "foo-prefix"))],
        created="2026-03-01T00:00:00Z",
    )
    older = ingress(
        "older", [rule("WEB.example", ("/", "Prefix", "foo-exact"))], created="2026-02-01T00:00:00Z"
    )
    rendered = go(newer, older)
    assert answer(rendered, HTTP, "web.example", "/x") == "default/foo-exact:80"
    assert [(p.ingress.name, p.reason) for p in rendered.problems] == [("newer", "Conflict")]
    assert rendered.served == {ObjectKey("default", "newer"), ObjectKey("default", "older")}


def test_exact_beats_an_older_prefix_on_the_same_path_without_conflict() -> None:
    older = ingress(
        "older",
        [rule("web.example", ("/foo", "Prefix", "foo-prefix"))],
        created="2026-01-01T00:00:00Z",
    )
    newer = ingress(
        "newer",
        [rule("web.example", ("/foo", "Exact", "foo-exact"))],
        created="2026-02-01T00:00:00Z",
    )
    rendered = go(older, newer)
    assert answer(rendered, HTTP, "web.example", "/foo") == "default/foo-exact:80"
    assert answer(rendered, HTTP, "web.example", "/foo/x") == "default/foo-prefix:80"
    assert rendered.problems == []


# -- annotations ------------------------------------------------------------------------------


def clusters(rendered: Rendered) -> dict[str, Any]:
    return {r.body.cluster_id: r.body for r in rendered.requests if r.verb == "add_cluster"}


def test_pysozu_annotations_configure_the_cluster() -> None:
    annotations = {
        "pysozu.io/sticky-sessions": "true",
        "pysozu.io/load-balancing": "least_loaded",
        "pysozu.io/load-metric": "requests",
        "pysozu.io/answer-503": "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
    }
    rendered = go(ingress("web", [WEB], annotations=annotations))
    cluster = clusters(rendered)["default/echo-service:80"]
    assert cluster.sticky_session is True
    assert cluster.load_balancing == LoadBalancingAlgorithms.LEAST_LOADED
    assert cluster.load_metric == LoadMetric.REQUESTS
    assert cluster.answers == {"503": "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"}
    assert rendered.problems == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pysozu.io/sticky-sessions", "yes"),
        ("pysozu.io/load-balancing", "fastest"),
        ("pysozu.io/answer-200", "x"),
        ("pysozu.io/answer-503", "file:///etc/passwd"),
        ("pysozu.io/ssl-redirect", "maybe"),
        ("pysozu.io/backend-weights", "pod-a"),
        ("pysozu.io/connect-timeout", "0"),
        ("pysozu.io/backend-timeout", "soon"),
        ("pysozu.io/backend-timeout", "3601"),
        ("pysozu.io/session-cookie-name", "bad name"),
        ("pysozu.io/session-cookie-name", "SID"),  # without sticky sessions: no effect
        ("pysozu.io/no-such-thing", "1"),
    ],
)
def test_invalid_annotations_are_events_never_crashes(key: str, value: str) -> None:
    rendered = go(ingress("web", [WEB], annotations={key: value}))
    assert reasons(rendered) == ["InvalidAnnotation"]
    assert answer(rendered, HTTP, "web.example", "/") == "default/echo-service:80"


def test_backend_weights_by_pod_or_ip() -> None:
    annotations = {"pysozu.io/backend-weights": "app-pod-1=300, 10.0.0.3=50"}
    slice_ = endpoint_slice(
        "app-1",
        "app",
        [{"name": "web", "port": 8080}],
        [ep("10.0.0.1", pod="app-pod-1"), ep("10.0.0.3"), ep("10.0.0.4")],
    )
    body = ingress("web", [rule("app.example", ("/", "Prefix", "app"))], annotations=annotations)
    rendered = go(body, APP_SERVICE, slice_)
    weights = {
        str(r.body.address): r.body.load_balancing_parameters
        and r.body.load_balancing_parameters.weight
        for r in rendered.requests
        if r.verb == "add_backend"
    }
    assert weights == {"10.0.0.1:8080": 300, "10.0.0.3:8080": 50, "10.0.0.4:8080": None}


NGINX = "nginx.ingress.kubernetes.io/"


def test_nginx_annotations_only_with_the_flag() -> None:
    annotations = {
        NGINX + "affinity": "cookie",
        NGINX + "load-balance": "ewma",
        NGINX + "ssl-redirect": "false",
    }
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    body = ingress("web", [TLS_RULE], annotations=annotations, tls=tls)
    plain = go(body)
    assert clusters(plain)["default/echo-service:80"].sticky_session is False
    assert answer(plain, HTTP, "foo.bar.com", "/") == "308 https"
    mapped = go(body, settings=RenderSettings(nginx_annotations=True))
    cluster = clusters(mapped)["default/echo-service:80"]
    assert cluster.sticky_session is True
    assert cluster.load_balancing == LoadBalancingAlgorithms.LEAST_LOADED
    assert cluster.load_metric == LoadMetric.CONNECTION_TIME
    assert answer(mapped, HTTP, "foo.bar.com", "/") == "default/echo-service:80"
    assert mapped.problems == []


def test_timeout_and_cookie_annotations_configure_the_cluster() -> None:
    annotations = {
        "pysozu.io/connect-timeout": "2",
        "pysozu.io/backend-timeout": "45s",
        "pysozu.io/sticky-sessions": "true",
        "pysozu.io/session-cookie-name": "APPID",
    }
    rendered = go(ingress("web", [WEB], annotations=annotations))
    cluster = clusters(rendered)["default/echo-service:80"]
    assert (cluster.connect_timeout, cluster.back_timeout) == (2, 45)
    assert (cluster.sticky_session, cluster.sticky_name) == (True, "APPID")
    assert rendered.problems == []
    plain = clusters(go(ingress("web", [WEB])))["default/echo-service:80"]
    assert (plain.connect_timeout, plain.back_timeout, plain.sticky_name) == (None, None, None)


def test_nginx_timeouts_and_cookie_name_map_to_the_cluster() -> None:
    annotations = {
        NGINX + "proxy-connect-timeout": "3",
        NGINX + "proxy-read-timeout": "20",
        NGINX + "proxy-send-timeout": "90",  # one back_timeout for both: the larger
        NGINX + "affinity": "cookie",
        NGINX + "session-cookie-name": "route",
    }
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=NGINX_SETTINGS)
    cluster = clusters(rendered)["default/echo-service:80"]
    assert (cluster.connect_timeout, cluster.back_timeout) == (3, 90)
    assert (cluster.sticky_session, cluster.sticky_name) == (True, "route")
    assert rendered.problems == []


def test_pysozu_timeouts_and_cookie_name_win_over_nginx_ones() -> None:
    annotations = {
        NGINX + "proxy-read-timeout": "20",
        NGINX + "affinity": "cookie",
        NGINX + "session-cookie-name": "route",
        "pysozu.io/backend-timeout": "5",
        "pysozu.io/session-cookie-name": "mine",
    }
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=NGINX_SETTINGS)
    cluster = clusters(rendered)["default/echo-service:80"]
    assert (cluster.back_timeout, cluster.sticky_name) == (5, "mine")
    assert rendered.problems == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("proxy-read-timeout", "forever"),
        ("proxy-connect-timeout", "-1"),
        ("session-cookie-name", "a;b"),
        ("session-cookie-name", "route\n"),
        ("session-cookie-name", "r" * 300),
        ("session-cookie-name", "route"),  # without affinity: no effect, reported
    ],
)
def test_bad_nginx_timeouts_and_cookie_names_are_events(name: str, value: str) -> None:
    body = ingress("web", [WEB], annotations={NGINX + name: value})
    rendered = go(body, settings=NGINX_SETTINGS)
    assert reasons(rendered) == ["InvalidAnnotation"]
    cluster = clusters(rendered)["default/echo-service:80"]
    assert (cluster.connect_timeout, cluster.back_timeout, cluster.sticky_name) == (
        None,
        None,
        None,
    )
    assert answer(rendered, HTTP, "web.example", "/") == "default/echo-service:80"


NGINX_SETTINGS = RenderSettings(nginx_annotations=True)


def test_cluster_options_conflict_oldest_wins() -> None:
    rendered = go(
        ingress(
            "a",
            [WEB],
            annotations={"pysozu.io/sticky-sessions": "true"},
            created="2026-01-01T00:00:00Z",
        ),
        ingress(
            "b",
            [rule("b.example", ("/", "Prefix", "echo-service"))],
            created="2026-01-02T00:00:00Z",
        ),
    )
    assert clusters(rendered)["default/echo-service:80"].sticky_session is True
    assert [(p.ingress.name, p.reason) for p in rendered.problems] == [("b", "Conflict")]


# -- what changes diff to ---------------------------------------------------------------------


def state_of(rendered: Rendered) -> ConfigState:
    state = ConfigState()
    for request in rendered.requests:
        state.dispatch(request)
    return state


def test_the_rendered_state_is_accepted_by_the_dataplane_state() -> None:
    names = ("default_backend.yaml", "host_rules.yaml", "load_balancing.yaml", "path_rules.yaml")
    state = state_of(render(load(*BASE, *names), SETTINGS))
    assert state.hash() == state_of(render(load(*BASE, *names), SETTINGS)).hash()


def test_equal_state_diffs_to_nothing_and_endpoint_changes_only_touch_backends() -> None:
    body = ingress("web", [rule("app.example", ("/", "Prefix", "app"))])
    before = state_of(go(body, APP_SERVICE, APP_SLICE))
    assert before.diff(state_of(go(body, APP_SERVICE, APP_SLICE))) == []
    scaled = endpoint_slice(
        "app-1", "app", [{"name": "web", "port": 8080}], [ep("10.0.0.1"), ep("10.0.0.9")]
    )
    after = state_of(go(body, APP_SERVICE, scaled))
    changes = before.diff(after)
    assert sorted((r.verb, str(r.body.address)) for r in changes) == [
        ("add_backend", "10.0.0.9:8080"),
        ("remove_backend", "10.0.0.3:8080"),
    ]


def test_an_empty_snapshot_renders_only_the_listeners() -> None:
    rendered = render(Snapshot(), SETTINGS)
    assert [r.verb for r in rendered.requests] == [
        "add_http_listener",
        "activate_listener",
        "add_https_listener",
        "activate_listener",
    ]


def test_a_wildcard_certificate_secures_the_hosts_under_it() -> None:
    rules = [
        rule("a.wild.example", ("/", "Prefix", "echo-service")),
        rule("wild.example", ("/", "Prefix", "echo-service")),
    ]
    tls = [{"hosts": ["*.wild.example"], "secretName": "conformance-tls"}]
    rendered = go(ingress("web", rules, tls=tls))
    assert answer(rendered, HTTPS, "a.wild.example", "/") == "default/echo-service:80"
    assert answer(rendered, HTTP, "a.wild.example", "/") == "308 https"
    # One label, not zero: wild.example is not secured (no redirect), though served on HTTPS
    # with the listener's default certificate.
    assert answer(rendered, HTTP, "wild.example", "/") == "default/echo-service:80"
    (add,) = [r.body for r in rendered.requests if r.verb == "add_certificate"]
    assert add.certificate.names == ["*.wild.example"]
