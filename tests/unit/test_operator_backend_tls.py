"""`backend-protocol: HTTPS | GRPCS` and `proxy-ssl-*` (ingress-nginx names, and pysozu.io/):
what the annotations ask, what the rendered cluster's `backend_tls` holds once the Secret is
read, and the fail-closed cases (503, AnnotationNotEnforced). Pure: no sockets, no kopf."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import trustme
from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.annotations import parse_annotations
from ingress_operator.backend_tls_annotations import BackendTlsAsk, cluster_backend_tls
from ingress_operator.ingress_semantics import refused_cluster_id
from ingress_operator.model import ObjectKey, parse_ingress
from ingress_operator.render import Rendered, render
from ingress_operator.settings import RenderSettings
from test_operator_conformance import BASE, HTTP, answer, load

from dataplane.command.messages import BackendTls, Cluster, Request
from dataplane.command.state import ConfigState

NGINX = "nginx.ingress.kubernetes.io/"
CLUSTER = "default/echo-service:80"
UPSTREAM = "echo-service.default.svc"


def parse(annotations: dict[str, str], nginx: bool = True) -> Any:
    return parse_annotations(annotations, nginx=nginx)


# -- the annotations --------------------------------------------------------------------------


def test_https_with_ingress_nginx_defaults() -> None:
    options = parse({NGINX + "backend-protocol": "HTTPS"})
    assert options.backend_tls == BackendTlsAsk()  # verify off, no SNI, depth 1, no secret
    assert not options.http2 and not options.problems and not options.refused


def test_grpcs_is_tls_and_h2() -> None:
    options = parse({NGINX + "backend-protocol": "grpcs"})
    assert options.backend_tls == BackendTlsAsk() and options.http2


def test_every_proxy_ssl_key() -> None:
    options = parse(
        {
            NGINX + "backend-protocol": "HTTPS",
            NGINX + "proxy-ssl-secret": "default/backend-ca",
            NGINX + "proxy-ssl-verify": "on",
            NGINX + "proxy-ssl-name": "API.internal",
            NGINX + "proxy-ssl-server-name": "on",
            NGINX + "proxy-ssl-verify-depth": "3",
        }
    )
    assert options.backend_tls == BackendTlsAsk(
        verify=True,
        name="api.internal",
        server_name=True,
        depth=3,
        secret=("default", "backend-ca"),
        secret_key=NGINX + "proxy-ssl-secret",
    )
    assert not options.problems and not options.refused


def test_the_pysozu_keys_work_without_the_nginx_flag_and_win() -> None:
    annotations = {
        "pysozu.io/backend-protocol": "HTTPS",
        "pysozu.io/proxy-ssl-server-name": "on",
        NGINX + "proxy-ssl-server-name": "off",
    }
    assert parse(annotations, nginx=True).backend_tls == BackendTlsAsk(server_name=True)
    options = parse(annotations, nginx=False)
    assert options.backend_tls == BackendTlsAsk(server_name=True)
    nginx_only = parse({NGINX + "backend-protocol": "HTTPS"}, nginx=False)
    assert nginx_only.backend_tls is None


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"proxy-ssl-verify": "yes"}, "'yes' is neither on nor off"),
        ({"proxy-ssl-verify": "on"}, "verification needs proxy-ssl-secret"),
        ({"proxy-ssl-secret": "a/b/c"}, "is not namespace/name of a Secret"),
        (
            {"proxy-ssl-verify": "on", "proxy-ssl-secret": "ca", "proxy-ssl-name": "bad name"},
            "is not a host name to verify",
        ),
        (
            {"proxy-ssl-verify": "on", "proxy-ssl-secret": "ca", "proxy-ssl-verify-depth": "x"},
            "is not a depth",
        ),
    ],
)
def test_what_cannot_be_verified_fails_closed(extra: dict[str, str], why: str) -> None:
    annotations = {NGINX + "backend-protocol": "HTTPS"}
    annotations.update({NGINX + key: value for key, value in extra.items()})
    options = parse(annotations)
    assert options.refused
    assert any(n.reason == NOT_ENFORCED and why in n.message for n in options.notices)


def test_proxy_ssl_keys_without_tls_change_nothing_and_are_reported() -> None:
    options = parse({NGINX + "proxy-ssl-verify": "on", NGINX + "proxy-ssl-name": "a.b"})
    assert options.backend_tls is None and not options.refused
    assert len([p for p in options.problems if "without backend-protocol HTTPS" in p]) == 2


def test_a_bad_server_name_switch_is_reported_and_off() -> None:
    options = parse({NGINX + "backend-protocol": "HTTPS", NGINX + "proxy-ssl-server-name": "1"})
    assert options.backend_tls == BackendTlsAsk() and options.problems


# -- rendering, with Secrets ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(name: str, data: dict[str, bytes], namespace: str = "default") -> dict[str, Any]:
    metadata = {"namespace": namespace, "name": name, "uid": name}
    encoded = {key: _b64(value) for key, value in data.items()}
    return {"kind": "Secret", "type": "Opaque", "metadata": metadata, "data": encoded}


def ingress(annotations: dict[str, str]) -> dict[str, Any]:
    paths = [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "echo-service", "port": {"number": 80}}},
        }
    ]
    metadata = {"namespace": "default", "name": "app", "annotations": annotations}
    spec = {
        "ingressClassName": "pysozu",
        "rules": [{"host": "app.example", "http": {"paths": paths}}],
    }
    return {"kind": "Ingress", "metadata": metadata, "spec": spec}


def go(annotations: dict[str, str], *secrets: dict[str, Any]) -> Rendered:
    full = {NGINX + key: value for key, value in annotations.items()}
    return render(
        load(*BASE, extra=[ingress(full), *secrets]), RenderSettings(nginx_annotations=True)
    )


def cluster_of(rendered: Rendered) -> Cluster:
    found = [
        r for r in rendered.requests if r.verb == "add_cluster" and r.body.cluster_id == CLUSTER
    ]
    assert len(found) == 1
    ConfigState().dispatch(found[0])  # the dataplane accepts it
    cluster: Cluster = found[0].body
    return cluster


def test_https_renders_backend_tls_with_the_upstream_name() -> None:
    cluster = cluster_of(go({"backend-protocol": "HTTPS", "proxy-ssl-server-name": "on"}))
    assert cluster.backend_tls == BackendTls(server_name=UPSTREAM)
    assert cluster.http2 is None


def test_verification_with_the_secrets_ca_and_client_certificate(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("proxy.client")
    data = {
        "ca.crt": ca.cert_pem.bytes(),
        "tls.crt": leaf.cert_chain_pems[0].bytes(),
        "tls.key": leaf.private_key_pem.bytes(),
    }
    annotations = {
        "backend-protocol": "GRPCS",
        "proxy-ssl-secret": "default/backend-tls",
        "proxy-ssl-verify": "on",
        "proxy-ssl-name": "api.internal",
    }
    cluster = cluster_of(go(annotations, secret("backend-tls", data)))
    tls = cluster.backend_tls
    assert tls is not None and cluster.http2 is True
    assert (tls.verify, tls.verify_name, tls.server_name, tls.verify_depth) == (
        True,
        "api.internal",
        None,  # proxy-ssl-server-name is off by default: no SNI
        1,
    )
    assert tls.ca == ca.cert_pem.bytes().decode()
    assert tls.certificate == leaf.cert_chain_pems[0].bytes().decode()
    assert tls.key == leaf.private_key_pem.bytes().decode()


def test_a_ca_only_secret_and_the_default_name(ca: trustme.CA) -> None:
    annotations = {
        "backend-protocol": "HTTPS",
        "proxy-ssl-secret": "backend-ca",
        "proxy-ssl-verify": "on",
    }
    cluster = cluster_of(go(annotations, secret("backend-ca", {"ca.crt": ca.cert_pem.bytes()})))
    assert cluster.backend_tls == BackendTls(
        verify=True, verify_name=UPSTREAM, verify_depth=1, ca=ca.cert_pem.bytes().decode()
    )


def refused(rendered: Rendered) -> list[str]:
    return [p.message for p in rendered.problems if p.reason == NOT_ENFORCED]


@pytest.mark.parametrize(
    ("secret_ref", "data", "why"),
    [
        ("default/missing", None, "Secret default/missing not found"),
        ("other/backend-ca", None, "a Secret of another namespace is not read"),
        ("backend-pair", "pair", "has no ca.crt to verify with"),
        ("backend-bad", "bad", "ca.crt holds no CERTIFICATE"),
    ],
)
def test_an_unusable_secret_fails_closed(
    ca: trustme.CA, secret_ref: str, data: str | None, why: str
) -> None:
    leaf = ca.issue_cert("x.internal")
    bodies = [
        secret("backend-ca", {"ca.crt": ca.cert_pem.bytes()}, namespace="other"),
        secret(
            "backend-pair",
            {"tls.crt": leaf.cert_chain_pems[0].bytes(), "tls.key": leaf.private_key_pem.bytes()},
        ),
        secret("backend-bad", {"ca.crt": b"not pem"}),
    ]
    annotations = {
        "backend-protocol": "HTTPS",
        "proxy-ssl-secret": secret_ref,
        "proxy-ssl-verify": "on",
    }
    rendered = go(annotations, *bodies)
    assert answer(rendered, HTTP, "app.example", "/") == refused_cluster_id(
        ObjectKey("default", "app")
    )
    assert ObjectKey("default", "app") in rendered.refused
    assert any(why in message and "proxy-ssl-secret" in message for message in refused(rendered))


def test_without_verification_a_missing_secret_fails_closed_too() -> None:
    rendered = go({"backend-protocol": "HTTPS", "proxy-ssl-secret": "default/missing"})
    assert ObjectKey("default", "app") in rendered.refused


def test_two_ingresses_asking_different_tls_of_one_service_conflict() -> None:
    first = ingress({NGINX + "backend-protocol": "HTTPS"})
    second = ingress({NGINX + "backend-protocol": "HTTPS", NGINX + "proxy-ssl-server-name": "on"})
    second["metadata"] = {
        **second["metadata"],
        "name": "app2",
        "creationTimestamp": "2027-01-01T00:00:00Z",
    }
    second["spec"]["rules"][0]["host"] = "other.example"
    first["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    rendered = render(load(*BASE, extra=[first, second]), RenderSettings(nginx_annotations=True))
    assert any(
        p.reason == "Conflict" and "annotations of older" in p.message for p in rendered.problems
    )


def test_a_cluster_whose_secret_is_unusable_where_it_is_rendered_trusts_nothing() -> None:
    """A canary Ingress takes its main's options; in another namespace the Secret is not
    there: its cluster verifies against a CA that signs nothing (every connect fails: 503)."""
    options = parse({NGINX + "backend-protocol": "HTTPS", NGINX + "proxy-ssl-secret": "ca"})
    body = ingress({})
    body["metadata"]["namespace"] = "other"
    owner = parse_ingress(body)
    ref = owner.rules[0].paths[0].backend
    assert ref is not None
    tls = cluster_backend_tls(options, {}, owner, ref)
    assert tls is not None and tls.verify and tls.verify_name == "invalid" and tls.ca
    cluster = Cluster(cluster_id="other/echo-service:80", backend_tls=tls)
    ConfigState().dispatch(Request.of(add_cluster=cluster))  # accepted: it fails at connect
