"""ingress-nginx's basic auth (auth-type, auth-secret, auth-secret-type, auth-realm) -> the
cluster's authorized_hashes and required_auth on every route; what cannot be enforced fails
closed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.model import ObjectKey, parse_auth_secret
from ingress_operator.render import Rendered
from ingress_operator.settings import RenderSettings
from passlib.hash import apr_md5_crypt, bcrypt
from test_operator_conformance import HTTP, HTTPS, answer
from test_operator_render import TLS_RULE, WEB, go, ingress, state_of

pytestmark = pytest.mark.timeout(20)

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
SERVED = "default/echo-service:80"
REFUSED = "default/web:-refused"
BOB = "bob:" + bcrypt.using(rounds=4, ident="2y").hash("hunter2")
CAROL = "carol:" + apr_md5_crypt.hash("open sesame")


def secret(name: str, data: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    metadata = {"name": name, "namespace": namespace}
    return {"kind": "Secret", "metadata": metadata, "type": "Opaque", "data": encoded}


def basic(secret_name: str = "htpasswd", **more: str) -> dict[str, str]:
    return {NGINX + "auth-type": "basic", NGINX + "auth-secret": secret_name} | {
        NGINX + k.replace("_", "-"): v for k, v in more.items()
    }


def cluster(rendered: Rendered, cid: str = SERVED) -> Any:
    [body] = [
        r.body for r in rendered.requests if r.verb == "add_cluster" and r.body.cluster_id == cid
    ]
    return body


def required_auth(rendered: Rendered) -> set[bool | None]:
    return {r.body.required_auth for r in rendered.requests if r.verb.endswith("_frontend")}


def test_an_htpasswd_file_secret_guards_every_route() -> None:
    htpasswd = secret("htpasswd", {"auth": f"# team\n{BOB}\n\n{CAROL}\nbroken-line\n"})
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    body = ingress("web", [TLS_RULE], tls=tls, annotations=basic(auth_realm="Staff only"))
    rendered = go(body, htpasswd, settings=ON)
    assert answer(rendered, HTTPS, "foo.bar.com", "/") == SERVED
    served = cluster(rendered)
    assert served.authorized_hashes == [BOB, CAROL]
    assert served.www_authenticate == "Staff only"
    assert required_auth(rendered) == {True}
    [problem] = rendered.problems  # the broken line, named by its number, never a hash
    assert problem.reason == "InvalidAnnotation" and "line 5: not user:hash" in problem.message
    state_of(rendered)  # the dataplane's state takes it


def test_an_auth_map_secret_and_the_default_realm() -> None:
    users = {"bob": BOB.partition(":")[2], "carol": CAROL.partition(":")[2]}
    body = ingress("web", [WEB], annotations=basic("users", auth_secret_type="auth-map"))
    rendered = go(body, secret("users", users), settings=ON)
    served = cluster(rendered)
    assert sorted(served.authorized_hashes) == [BOB, CAROL]
    assert served.www_authenticate == ""  # nginx's auth_basic "": Basic realm=""
    assert rendered.problems == []


@pytest.mark.parametrize(
    ("annotations", "said"),
    [
        (basic("missing"), "Secret default/missing not found"),
        (basic("other/htpasswd"), "another namespace"),
        ({NGINX + "auth-type": "digest", NGINX + "auth-secret": "htpasswd"}, "only basic"),
        ({NGINX + "auth-type": "basic"}, "needs auth-secret"),
        (basic(auth_secret_type="auth-list"), "is not auth-file or auth-map"),
        ({NGINX + "auth-secret": "htpasswd"}, "has no effect without auth-type"),
        (basic("users"), "has no auth key"),  # an auth-map Secret read as auth-file
    ],
)
def test_what_cannot_be_enforced_fails_closed(annotations: dict[str, str], said: str) -> None:
    secrets = (
        secret("htpasswd", {"auth": BOB}),
        secret("htpasswd", {"auth": BOB}, namespace="other"),
        secret("users", {"bob": BOB.partition(":")[2]}),
    )
    rendered = go(ingress("web", [WEB], annotations=annotations), *secrets, settings=ON)
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    assert rendered.refused == {ObjectKey("default", "web")}
    refusals = [p for p in rendered.problems if p.reason == NOT_ENFORCED]
    assert refusals and said in refusals[0].message and "503" in refusals[0].message


def test_without_the_nginx_flag_the_nginx_keys_fail_closed_and_pysozu_ones_work() -> None:
    htpasswd = secret("htpasswd", {"auth": BOB})
    rendered = go(ingress("web", [WEB], annotations=basic()), htpasswd)
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    ours = {"pysozu.io/auth-type": "basic", "pysozu.io/auth-secret": "htpasswd"}
    rendered = go(ingress("web", [WEB], annotations=ours), htpasswd)
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    assert cluster(rendered).authorized_hashes == [BOB]


def test_which_secrets_basic_auth_can_read() -> None:
    def parsed(data: dict[str, str]) -> Any:
        return parse_auth_secret(secret("s", data))

    assert parsed({"auth": BOB}).file_entries == (BOB,)
    assert parsed({"bob": BOB.partition(":")[2]}).map_entries == (BOB,)
    assert parsed({"password": "hunter2"}) is None  # any Opaque Secret: not kept
    assert parsed({"config.yaml": "a: 1", "bob": BOB.partition(":")[2]}) is None
    slow = parsed({"auth": "dave:$6$rounds=5000$salt$" + "x" * 86})
    assert slow.file_entries == () and "SHA-256/512-crypt" in slow.file_problems[0]
