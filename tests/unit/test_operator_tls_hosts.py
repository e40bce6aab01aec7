"""Ingress TLS semantics as ingress-nginx has them: every route on HTTPS (the default
certificate where no Secret names the host), a `tls` entry without hosts securing the rule
hosts its certificate covers, key pairs in Opaque Secrets. Pure: no sockets, no kopf."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from ingress_operator.indices import FIELD_SELECTORS, SECRETS, Indices
from ingress_operator.model import ObjectKey
from ingress_operator.render import render
from ingress_operator.settings import RenderSettings
from ingress_operator.tls_hosts import covers
from test_operator_conformance import BASE, HTTP, HTTPS, answer, load, snapshot_of
from test_operator_render import TLS_RULE, WEB, go, ingress, rule

SERVED = "default/echo-service:80"


@pytest.mark.parametrize(
    ("name", "host", "expected"),
    [
        ("foo.bar.com", "foo.bar.com", True),
        ("FOO.bar.com.", "foo.bar.com", True),
        ("*.bar.com", "foo.bar.com", True),
        ("*.bar.com", "a.foo.bar.com", False),  # one label
        ("*.bar.com", "bar.com", False),
        ("*.bar.com", "*.bar.com", True),  # a wildcard rule, the same wildcard name
        ("foo.bar.com", "*.bar.com", False),
        ("other.com", "foo.bar.com", False),
    ],
)
def test_covers(name: str, host: str, expected: bool) -> None:
    assert covers(name, host) is expected


def certificates(rendered: Any) -> list[list[str]]:
    return [r.body.certificate.names for r in rendered.requests if r.verb == "add_certificate"]


def test_a_tls_entry_without_hosts_secures_the_rule_hosts_its_certificate_covers() -> None:
    rules = [TLS_RULE, WEB]  # foo.bar.com (covered) and web.example (not)
    body = ingress("web", rules, tls=[{"secretName": "conformance-tls"}])
    rendered = go(body)
    assert rendered.problems == []
    assert certificates(rendered) == [["foo.bar.com"]]
    assert answer(rendered, HTTP, "foo.bar.com", "/") == "308 https"  # secured: redirected
    assert answer(rendered, HTTPS, "foo.bar.com", "/") == SERVED
    assert answer(rendered, HTTP, "web.example", "/") == SERVED  # not covered: not redirected


def test_a_tls_entry_without_hosts_that_covers_no_rule_host_is_reported_not_loaded() -> None:
    rendered = go(ingress("web", [WEB], tls=[{"secretName": "conformance-tls"}]))
    [problem] = rendered.problems
    assert problem.reason == "InvalidTLS"
    assert "covers none" in problem.message and "foo.bar.com" in problem.message
    assert certificates(rendered) == []
    assert answer(rendered, HTTP, "web.example", "/") == SERVED


def test_default_backend_and_hostless_rules_answer_on_https() -> None:
    default = {"service": {"name": "echo-service", "port": {"number": 80}}}
    hostless = rule(None, ("/x", "Prefix", "foo-bar-com"))
    rendered = go(ingress("web", [hostless], default=default))
    for address in (HTTP, HTTPS):
        assert answer(rendered, address, "any.example", "/") == SERVED
        assert answer(rendered, address, "any.example", "/x/y") == "default/foo-bar-com:80"


def test_force_ssl_redirect_without_tls_lands_on_a_served_https_route() -> None:
    annotations = {"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}
    rendered = go(
        ingress("web", [WEB], annotations=annotations),
        settings=RenderSettings(nginx_annotations=True),
    )
    assert answer(rendered, HTTP, "web.example", "/") == "308 https"
    assert answer(rendered, HTTPS, "web.example", "/") == SERVED


# -- Secrets ----------------------------------------------------------------------------------


def secret_body(name: str, kind: str, data: dict[str, str]) -> dict[str, Any]:
    metadata = {"namespace": "default", "name": name, "uid": name}
    return {"kind": "Secret", "type": kind, "metadata": metadata, "data": data}


def pair() -> dict[str, str]:
    secret = load(*BASE).secrets[ObjectKey("default", "conformance-tls")]
    return {
        "tls.crt": base64.b64encode(secret.certificate.encode()).decode(),
        "tls.key": base64.b64encode(secret.private_key.encode()).decode(),
    }


def test_opaque_secrets_with_a_key_pair_are_kept_others_are_not() -> None:
    indices = Indices()
    indices.apply(SECRETS, None, secret_body("opaque", "Opaque", pair()))
    indices.apply(SECRETS, None, secret_body("token", "Opaque", {"token": "eA=="}))
    indices.apply(SECRETS, None, secret_body("half", "Opaque", {"tls.crt": "eA=="}))
    assert sorted(key.name for key in indices.secrets) == ["half", "opaque"]
    assert indices.secrets[ObjectKey("default", "opaque")].problem is None
    assert indices.secrets[ObjectKey("default", "half")].problem is not None  # reported
    indices.apply(SECRETS, "MODIFIED", secret_body("opaque", "Opaque", {"other": "eA=="}))
    assert ObjectKey("default", "opaque") not in indices.secrets


def test_only_helm_release_secrets_stay_on_the_api_server() -> None:
    assert FIELD_SELECTORS[SECRETS] == "type!=helm.sh/release.v1"


def test_an_ingress_served_from_an_opaque_secret() -> None:
    snapshot = load(*BASE)
    indices = Indices()
    indices.apply(SECRETS, None, secret_body("opaque", "Opaque", pair()))
    snapshot.secrets.update(indices.secrets)
    body = ingress("web", [TLS_RULE], tls=[{"hosts": ["foo.bar.com"], "secretName": "opaque"}])
    full = snapshot_of([body])
    snapshot.ingresses.update(full.ingresses)
    rendered = render(snapshot, RenderSettings())
    assert rendered.problems == []
    assert certificates(rendered) == [["foo.bar.com"]]


# -- --default-ssl-certificate ----------------------------------------------------------------

DEFAULT_CERT = RenderSettings(default_certificate=("default", "conformance-tls"))


def test_the_default_certificate_names_every_host_no_entry_secures_without_redirecting() -> None:
    rendered = render(load(*BASE, extra=[ingress("web", [WEB])]), DEFAULT_CERT)
    assert certificates(rendered) == [["web.example"]]
    assert answer(rendered, HTTP, "web.example", "/") == SERVED  # not secured: no redirect
    assert rendered.problems == []
    assert certificates(go(ingress("web", [WEB]))) == []  # without the flag: the listener's


def test_an_entry_without_secret_name_is_secured_by_the_default_certificate() -> None:
    body = ingress("web", [WEB], tls=[{"hosts": ["web.example"]}])
    rendered = render(load(*BASE, extra=[body]), DEFAULT_CERT)
    assert certificates(rendered) == [["web.example"]]
    assert answer(rendered, HTTP, "web.example", "/") == "308 https"  # secured: redirected
    # Without the flag (or with a Secret that is not there) it is reported, not ignored.
    for settings in (RenderSettings(), RenderSettings(default_certificate=("default", "nope"))):
        rendered = render(load(*BASE, extra=[body]), settings)
        [problem] = rendered.problems
        assert problem.reason == "InvalidTLS" and "without secretName" in problem.message
        assert answer(rendered, HTTP, "web.example", "/") == SERVED


def test_a_host_with_its_own_certificate_keeps_it() -> None:
    tls = [{"hosts": ["foo.bar.com"], "secretName": "other-tls"}]
    body = ingress("web", [TLS_RULE, WEB], tls=tls)
    rendered = render(load(*BASE, extra=[body]), DEFAULT_CERT)
    names = sorted(certificates(rendered))
    assert names == [["foo.bar.com"], ["web.example"]]  # two certificates, one name each
