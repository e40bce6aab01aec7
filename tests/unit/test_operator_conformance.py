"""The ingress-controller-conformance scenarios, against the rendered dataplane state.

Every scenario of the conformance feature files (default_backend, host_rules, ingress_class,
load_balancing, path_rules) is a table row: a request (listener, host, path) and the service
that must answer it (or 404 / a redirect). The rendered frontends are evaluated with the
dataplane's routing rules (see `route` below), so these tests check the translation of Ingress
semantics into dataplane rules, with no sockets.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from ingress_operator.model import (
    ObjectKey,
    Snapshot,
    has_tls_keys,
    parse_auth_secret,
    parse_endpoint_slice,
    parse_ingress,
    parse_ingress_class,
    parse_service,
    parse_tls_secret,
)
from ingress_operator.render import Rendered, render
from ingress_operator.settings import RenderSettings

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    PathRuleKind,
    RedirectPolicy,
    RedirectScheme,
    Request,
    RequestHttpFrontend,
    RulePosition,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ingress"
SETTINGS = RenderSettings()
HTTP, HTTPS = SETTINGS.http_address, SETTINGS.https_address
NOT_FOUND = "404"


@functools.cache
def _bodies(name: str) -> tuple[dict[str, Any], ...]:
    documents = yaml.safe_load_all((FIXTURES / name).read_text())
    return tuple(body for body in documents if body is not None)


def load(*names: str, extra: list[dict[str, Any]] | None = None) -> Snapshot:
    """A snapshot of the objects in fixture files (plus `extra` bodies)."""
    bodies = [body for name in names for body in _bodies(name)]
    return snapshot_of(bodies + (extra or []))


def snapshot_of(bodies: list[dict[str, Any]]) -> Snapshot:
    snapshot = Snapshot()
    for body in bodies:
        match body["kind"]:
            case "Ingress":
                ingress = parse_ingress(body)
                snapshot.ingresses[ingress.key] = ingress
            case "IngressClass":
                ingress_class = parse_ingress_class(body)
                snapshot.classes[ingress_class.name] = ingress_class
            case "Service":
                service = parse_service(body)
                snapshot.services[service.key] = service
            case "EndpointSlice":
                endpoint_slice = parse_endpoint_slice(body)
                key = ObjectKey(endpoint_slice.key.namespace, endpoint_slice.service)
                snapshot.slices.setdefault(key, []).append(endpoint_slice)
            case "Secret":
                if has_tls_keys(body):
                    secret = parse_tls_secret(body)
                    snapshot.secrets[secret.key] = secret
                if (auth := parse_auth_secret(body)) is not None:
                    snapshot.auth_secrets[auth.key] = auth
    return snapshot


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def _path_matches(kind: PathRuleKind, value: str, path: str) -> bool:
    if kind == PathRuleKind.EQUALS:
        return path == value
    if kind == PathRuleKind.PREFIX:
        return path.startswith(value)
    raise AssertionError("the controller renders no REGEX rules")


def route(rendered: Rendered, address: SocketAddress, host: str, path: str) -> Any:
    """The frontend the dataplane picks (sozu's router): the most specific host pattern with
    routes (exact, then `*.suffix`, then `*`); in it an EQUALS match, else the longest PREFIX;
    else the POST list in order; else None (404)."""
    verb = "add_http_frontend" if address == HTTP else "add_https_frontend"
    fronts = [r.body for r in rendered.requests if r.verb == verb]
    tree = [f for f in fronts if f.position == RulePosition.TREE]
    host = host.lower().split(":")[0]
    for rank in (
        lambda p: p == host,
        lambda p: p.startswith("*.") and p != "*",
        lambda p: p == "*",
    ):
        candidates = [f for f in tree if rank(f.hostname) and _host_matches(f.hostname, host)]
        if not candidates:
            continue
        path_only = path.split("?")[0]
        for front in candidates:
            if front.path.kind == PathRuleKind.EQUALS and front.path.value == path_only:
                return front
        prefixes = [
            f
            for f in candidates
            if f.path.kind == PathRuleKind.PREFIX and path_only.startswith(f.path.value)
        ]
        if prefixes:
            return max(prefixes, key=lambda f: len(f.path.value))
        break
    for front in fronts:
        post = front.position == RulePosition.POST and _host_matches(front.hostname, host)
        if post and _path_matches(front.path.kind, front.path.value, path.split("?")[0]):
            return front
    return None


def answer(rendered: Rendered, address: SocketAddress, host: str, path: str) -> str:
    """What the client sees: the cluster id, "404", or "308 https" for a redirect."""
    front: RequestHttpFrontend | None = route(rendered, address, host, path)
    if front is None:
        return NOT_FOUND
    if front.redirect == RedirectPolicy.PERMANENT_REDIRECT:
        assert front.redirect_scheme == RedirectScheme.USE_HTTPS
        return "308 https"
    assert front.cluster_id is not None
    return front.cluster_id


def backends(rendered: Rendered, cluster_id: str) -> list[str]:
    return sorted(
        str(r.body.address)
        for r in rendered.requests
        if r.verb == "add_backend" and r.body.cluster_id == cluster_id
    )


BASE = ("classes.yaml", "services.yaml", "secrets.yaml")

# -- default_backend.feature ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["", "foo.bar.com", "echo", "10.0.0.1", "A.B.C.EXAMPLE"])
@pytest.mark.parametrize("path", ["/", "/foo", "/a/b/c/", "/x?y=z", "/%20space"])
def test_default_backend_takes_every_request(host: str, path: str) -> None:
    rendered = render(load(*BASE, "default_backend.yaml"), SETTINGS)
    assert answer(rendered, HTTP, host, path) == "default/echo-service:80"
    # On HTTPS too, with the listener's default certificate (ingress-nginx's default server).
    assert answer(rendered, HTTPS, host, path) == "default/echo-service:80"
    assert ObjectKey("default", "default-backend") in rendered.served  # status gets an address
    assert backends(rendered, "default/echo-service:80") == ["10.1.1.1:3000"]


# -- host_rules.feature -----------------------------------------------------------------------

HOST_RULES = [
    # (scenario, listener, host, expected)
    ("TLS foo.bar.com", HTTPS, "foo.bar.com", "default/foo-bar-com:http"),
    ("plain foo.bar.com redirects to TLS (308)", HTTP, "foo.bar.com", "308 https"),
    ("no match for subdomain.bar.com", HTTPS, "subdomain.bar.com", NOT_FOUND),
    ("no match for subdomain.bar.com (http)", HTTP, "subdomain.bar.com", NOT_FOUND),
    ("wildcard bar.foo.com", HTTP, "bar.foo.com", "default/wildcard-foo-com:http"),
    (
        "no certificate for *.foo.com: the default one",
        HTTPS,
        "bar.foo.com",
        "default/wildcard-foo-com:http",
    ),
    ("wildcard is one label: baz.bar.foo.com", HTTP, "baz.bar.foo.com", NOT_FOUND),
    ("wildcard needs a label: foo.com", HTTP, "foo.com", NOT_FOUND),
    ("Host header port is ignored", HTTPS, "foo.bar.com:8443", "default/foo-bar-com:http"),
    ("Host is case-insensitive", HTTPS, "FOO.Bar.com", "default/foo-bar-com:http"),
]


@pytest.mark.parametrize(("scenario", "address", "host", "expected"), HOST_RULES)
def test_host_rules(scenario: str, address: SocketAddress, host: str, expected: str) -> None:
    rendered = render(load(*BASE, "host_rules.yaml"), SETTINGS)
    assert answer(rendered, address, host, "/") == expected, scenario


def test_host_rules_certificate_is_served_by_sni_for_its_hosts() -> None:
    rendered = render(load(*BASE, "host_rules.yaml"), SETTINGS)
    (add,) = [r.body for r in rendered.requests if r.verb == "add_certificate"]
    assert add.address == HTTPS
    assert add.certificate.names == ["foo.bar.com"]
    assert add.certificate.certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in add.certificate.key


def test_host_rules_plain_http_served_when_redirect_is_disabled() -> None:
    snapshot = load(*BASE, "host_rules.yaml")
    key = ObjectKey("default", "host-rules")
    ingress = snapshot.ingresses[key]
    snapshot.ingresses[key] = type(ingress)(
        **{
            **{name: getattr(ingress, name) for name in ingress.__slots__},
            "annotations": {"pysozu.io/ssl-redirect": "false"},
        }
    )
    rendered = render(snapshot, SETTINGS)
    assert answer(rendered, HTTP, "foo.bar.com", "/") == "default/foo-bar-com:http"


# -- ingress_class.feature --------------------------------------------------------------------


def test_ingress_of_an_unknown_class_is_neither_served_nor_given_status() -> None:
    rendered = render(load(*BASE, "ingress_class.yaml"), SETTINGS)
    assert rendered.served == frozenset()
    assert answer(rendered, HTTP, "anything", "/") == NOT_FOUND
    assert not [r for r in rendered.requests if r.verb in ("add_cluster", "add_backend")]


# -- load_balancing.feature -------------------------------------------------------------------


def test_load_balancing_spreads_over_every_ready_endpoint() -> None:
    rendered = render(load(*BASE, "load_balancing.yaml"), SETTINGS)
    assert answer(rendered, HTTP, "lb.example", "/") == "default/scaled-echo:80"
    expected = sorted(f"10.1.12.{i}:3000" for i in range(1, 11))
    assert backends(rendered, "default/scaled-echo:80") == expected


# -- path_rules.feature -----------------------------------------------------------------------

PATH_RULES = [
    # host, path, expected service (cluster) or 404
    ("exact-path-rules", "/foo", "foo-exact"),
    ("exact-path-rules", "/foo/", NOT_FOUND),
    ("exact-path-rules", "/FOO", NOT_FOUND),
    ("exact-path-rules", "/bar", NOT_FOUND),
    ("prefix-path-rules", "/foo", "foo-prefix"),
    ("prefix-path-rules", "/foo/", "foo-prefix"),
    ("prefix-path-rules", "/FOO", NOT_FOUND),
    ("prefix-path-rules", "/foobar", NOT_FOUND),  # element-wise, not a string prefix
    ("prefix-path-rules", "/aaa/bbb", "aaa-slash-bbb"),  # longest match wins
    ("prefix-path-rules", "/aaa/bbb/ccc", "aaa-slash-bbb"),
    ("prefix-path-rules", "/aaa/ccc", "aaa-prefix"),
    ("prefix-path-rules", "/aaaccc", NOT_FOUND),
    ("prefix-path-rules", "/aaa/bbbccc", "aaa-prefix"),  # /aaa/bb does not match /aaa/bbb
    ("prefix-path-rules", "/ccc", NOT_FOUND),
    ("mixed-path-rules", "/foo", "mixed-exact"),  # Exact wins the tie
    ("mixed-path-rules", "/foo/", "mixed-prefix"),
    ("mixed-path-rules", "/foo/x", "mixed-prefix"),
    ("trailing-slash-path-rules", "/aaa/bbb", "trailing-prefix"),  # trailing slash ignored
    ("trailing-slash-path-rules", "/aaa/bbb/", "trailing-prefix"),
    ("trailing-slash-path-rules", "/aaa/bbb/c", "trailing-prefix"),
    ("trailing-slash-path-rules", "/foo/", "trailing-exact"),
    ("trailing-slash-path-rules", "/foo", NOT_FOUND),  # Exact /foo/ does not match /foo
]


@pytest.mark.parametrize(("host", "path", "service"), PATH_RULES)
def test_path_rules(host: str, path: str, service: str) -> None:
    rendered = render(load(*BASE, "path_rules.yaml"), SETTINGS)
    expected = service if service == NOT_FOUND else f"default/{service}:80"
    assert answer(rendered, HTTP, host, path) == expected
    assert len(rendered.served) == 4


def test_every_fixture_together_renders_without_problems() -> None:
    names = ("default_backend", "host_rules", "load_balancing", "path_rules")
    snapshot = load(*BASE, *(f"{name}.yaml" for name in names))
    rendered = render(snapshot, SETTINGS)
    # Two default backends: the older one (same timestamp: namespace/name order) wins.
    assert [p.reason for p in rendered.problems] == ["Conflict"]
    assert answer(rendered, HTTP, "nothing.example", "/") == "default/echo-service:80"
    assert answer(rendered, HTTP, "prefix-path-rules", "/aaa") == "default/aaa-prefix:80"


def test_render_is_deterministic() -> None:
    first = render(load(*BASE, "path_rules.yaml", "host_rules.yaml"), SETTINGS).requests
    second = render(load(*BASE, "host_rules.yaml", "path_rules.yaml"), SETTINGS).requests
    assert [repr(r) for r in first] == [repr(r) for r in second]
    assert all(isinstance(r, Request) for r in first)
