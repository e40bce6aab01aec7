"""`auth-tls-*` (ingress-nginx names, and pysozu.io/): what the annotations ask, the
`client_auth` of the rendered HTTPS frontends once the Secret is read (every HTTPS route of the
host, as nginx's server), and the fail-closed cases (503, AnnotationNotEnforced). Pure."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.annotations import parse_annotations
from ingress_operator.client_auth_annotations import ClientTls
from ingress_operator.ingress_semantics import refused_cluster_id
from ingress_operator.model import ObjectKey
from ingress_operator.render import Rendered, render
from ingress_operator.settings import RenderSettings
from test_operator_conformance import BASE, HTTP, answer, load

from dataplane.command.messages import ClientAuth
from dataplane.command.state import ConfigState

NGINX = "nginx.ingress.kubernetes.io/"
SECRET_KEY = NGINX + "auth-tls-secret"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def secret(name: str, data: dict[str, bytes], namespace: str = "default") -> dict[str, Any]:
    metadata = {"namespace": namespace, "name": name, "uid": name}
    encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
    return {"kind": "Secret", "type": "Opaque", "metadata": metadata, "data": encoded}


def ingress(name: str, annotations: dict[str, str], host: str | None = "app.example") -> Any:
    paths = [
        {
            "path": f"/{name}",
            "pathType": "Prefix",
            "backend": {"service": {"name": "echo-service", "port": {"number": 80}}},
        }
    ]
    rule: dict[str, Any] = {"http": {"paths": paths}}
    if host is not None:
        rule["host"] = host
    metadata = {"namespace": "default", "name": name, "annotations": annotations}
    spec = {"ingressClassName": "pysozu", "rules": [rule]}
    return {"kind": "Ingress", "metadata": metadata, "spec": spec}


def go(*bodies: dict[str, Any]) -> Rendered:
    return render(load(*BASE, extra=list(bodies)), RenderSettings(nginx_annotations=True))


def https_fronts(rendered: Rendered) -> dict[str, Any]:
    found = {}
    for request in rendered.requests:
        if request.verb == "add_https_frontend":
            found[f"{request.body.hostname}{request.body.path.value}"] = request.body
    return found


def test_every_key_is_read() -> None:
    options = parse_annotations(
        {
            SECRET_KEY: "default/client-ca",
            NGINX + "auth-tls-verify-client": "optional",
            NGINX + "auth-tls-verify-depth": "2",
            NGINX + "auth-tls-error-page": "https://login.example/cert",
            NGINX + "auth-tls-pass-certificate-to-upstream": "true",
            "pysozu.io/auth-tls-match-cn": "CN=(alice|bob)",
        },
        nginx=True,
    )
    assert options.client_tls == ClientTls(
        ("default", "client-ca"),
        SECRET_KEY,
        "optional",
        2,
        "https://login.example/cert",
        True,
        "CN=(alice|bob)",
    )
    assert not options.refused and not options.problems
    off = parse_annotations({SECRET_KEY: "ca", NGINX + "auth-tls-verify-client": "off"}, True)
    assert off.client_tls is None and not off.refused
    without_flag = parse_annotations({SECRET_KEY: "ca"}, nginx=False)
    assert without_flag.client_tls is None and without_flag.refused == [SECRET_KEY]


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({NGINX + "auth-tls-verify-depth": "2"}, "has no effect without auth-tls-secret"),
        ({SECRET_KEY: "a/b/c"}, "is not namespace/name of a Secret"),
        ({SECRET_KEY: "ca", NGINX + "auth-tls-verify-client": "optional_no_ca"}, "not served"),
        ({SECRET_KEY: "ca", NGINX + "auth-tls-verify-client": "maybe"}, "is not on, optional"),
        ({SECRET_KEY: "ca", NGINX + "auth-tls-verify-depth": "x"}, "is not a depth"),
        ({SECRET_KEY: "ca", NGINX + "auth-tls-error-page": "/relative"}, "not an http(s) URL"),
        ({SECRET_KEY: "ca", NGINX + "auth-tls-match-cn": "CN=(a"}, "not a regular expression"),
    ],
)
def test_what_cannot_be_read_fails_closed(extra: dict[str, str], why: str) -> None:
    options = parse_annotations(extra, nginx=True)
    assert options.client_tls is None and options.refused
    assert any(why in notice.message for notice in options.notices)


def test_the_hosts_https_routes_get_the_secrets_ca(ca: trustme.CA) -> None:
    ca_pem = ca.cert_pem.bytes()
    rendered = go(
        ingress("a", {SECRET_KEY: "default/client-ca", NGINX + "auth-tls-match-cn": "CN=x"}),
        ingress("b", {}),  # same host, no annotation: nginx's server-wide setting covers it
        ingress("c", {}, host="other.example"),
        secret("client-ca", {"ca.crt": ca_pem}),
    )
    fronts = https_fronts(rendered)
    wanted = ClientAuth(ca=ca_pem.decode(), match_cn="CN=x")
    assert fronts["app.example/a"].client_auth == wanted
    assert fronts["app.example/b"].client_auth == wanted
    assert fronts["other.example/c"].client_auth is None
    http = [r for r in rendered.requests if r.verb == "add_http_frontend"]
    assert all(r.body.client_auth is None for r in http)
    state = ConfigState()
    for request in rendered.requests:
        if request.verb in ("add_https_listener", "add_cluster", "add_https_frontend"):
            state.dispatch(request)  # the dataplane accepts them


def _crl(ca: trustme.CA) -> bytes:
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject
    now = datetime.datetime.now(datetime.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return crl.public_bytes(serialization.Encoding.PEM)


def test_the_crl_is_carried(ca: trustme.CA) -> None:
    crl = _crl(ca)
    rendered = go(
        ingress("a", {SECRET_KEY: "client-ca"}),
        secret("client-ca", {"ca.crt": ca.cert_pem.bytes(), "ca.crl": crl}),
    )
    assert https_fronts(rendered)["app.example/a"].client_auth.crl == crl.decode()


def refusals(rendered: Rendered) -> list[str]:
    return [p.message for p in rendered.problems if p.reason == NOT_ENFORCED]


@pytest.mark.parametrize(
    ("secret_ref", "why"),
    [
        ("default/missing", "Secret default/missing not found"),
        ("other/client-ca", "a Secret of another namespace is not read"),
        ("pair", "has no ca.crt"),
        ("bad-crl", "crl is not a PEM CRL"),
    ],
)
def test_an_unusable_secret_fails_closed(ca: trustme.CA, secret_ref: str, why: str) -> None:
    leaf = ca.issue_cert("x.internal")
    rendered = go(
        ingress("a", {SECRET_KEY: secret_ref}),
        secret("client-ca", {"ca.crt": ca.cert_pem.bytes()}, namespace="other"),
        secret(
            "pair",
            {"tls.crt": leaf.cert_chain_pems[0].bytes(), "tls.key": leaf.private_key_pem.bytes()},
        ),
        secret("bad-crl", {"ca.crt": ca.cert_pem.bytes(), "ca.crl": b"nope"}),
    )
    owner = ObjectKey("default", "a")
    assert answer(rendered, HTTP, "app.example", "/a") == refused_cluster_id(owner)
    assert owner in rendered.refused
    assert any(why in message and "auth-tls-secret" in message for message in refusals(rendered))
    assert https_fronts(rendered)["app.example/a"].client_auth is None


def test_a_hostless_rule_fails_closed(ca: trustme.CA) -> None:
    rendered = go(
        ingress("a", {SECRET_KEY: "client-ca"}, host=None),
        secret("client-ca", {"ca.crt": ca.cert_pem.bytes()}),
    )
    assert ObjectKey("default", "a") in rendered.refused
    assert any("rule without host" in message for message in refusals(rendered))


def test_two_ingresses_of_one_host_asking_differently_conflict(ca: trustme.CA) -> None:
    rendered = go(
        ingress("a", {SECRET_KEY: "client-ca"}),
        ingress("b", {SECRET_KEY: "client-ca", NGINX + "auth-tls-verify-client": "optional"}),
        secret("client-ca", {"ca.crt": ca.cert_pem.bytes()}),
    )
    fronts = https_fronts(rendered)
    assert fronts["app.example/a"].client_auth == fronts["app.example/b"].client_auth
    conflicts = [p for p in rendered.problems if p.reason == "Conflict"]
    assert conflicts and "auth-tls-* is per host" in conflicts[0].message
