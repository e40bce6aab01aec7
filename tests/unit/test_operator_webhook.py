"""The admission webhook's judgement on AdmissionReview documents (no sockets): Ingress objects
built with the Kubernetes client's own types and serialized as the API server sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ingress_operator.model import IngressClass, ObjectKey, parse_tls_secret
from ingress_operator.settings import RenderSettings
from ingress_operator.webhook import AdmissionError, Context, judge, review
from kubernetes import client as k8s

OURS = "pysozu.io/ingress-controller"
CLASSES = {
    "pysozu": IngressClass("pysozu", OURS, False),
    "nginx": IngressClass("nginx", "k8s.io/ingress-nginx", False),
}
CONTEXT = Context(classes=lambda: CLASSES)
RESTRICTED = "nginx.ingress.kubernetes.io/whitelist-source-range"


def ingress_object(
    *,
    class_name: str | None = "pysozu",
    annotations: dict[str, str] | None = None,
    path: str = "/",
    path_type: str = "Prefix",
    host: str = "app.example",
    backend: k8s.V1IngressBackend | None = None,
    tls: list[k8s.V1IngressTLS] | None = None,
    namespace: str = "default",
) -> dict[str, Any]:
    backend = backend or k8s.V1IngressBackend(
        service=k8s.V1IngressServiceBackend(name="app", port=k8s.V1ServiceBackendPort(number=80))
    )
    ingress = k8s.V1Ingress(
        api_version="networking.k8s.io/v1",
        kind="Ingress",
        metadata=k8s.V1ObjectMeta(
            name="app", namespace=namespace, annotations=annotations, uid="u-1"
        ),
        spec=k8s.V1IngressSpec(
            ingress_class_name=class_name,
            rules=[
                k8s.V1IngressRule(
                    host=host,
                    http=k8s.V1HTTPIngressRuleValue(
                        paths=[
                            k8s.V1HTTPIngressPath(path=path, path_type=path_type, backend=backend)
                        ]
                    ),
                )
            ],
            tls=tls,
        ),
    )
    body: dict[str, Any] = k8s.ApiClient().sanitize_for_serialization(ingress)
    return body


def admission_review(obj: dict[str, Any] | None, operation: str = "CREATE") -> bytes:
    request: dict[str, Any] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
        "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
        "requestKind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
        "requestResource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
        "name": "app",
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    document = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(document).encode()


def answer(body: bytes, context: Context = CONTEXT) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(review(body, context))
    assert result["apiVersion"] == "admission.k8s.io/v1"
    assert result["kind"] == "AdmissionReview"
    assert result["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    response: dict[str, Any] = result["response"]
    return response


def test_a_plain_ingress_of_our_class_is_allowed() -> None:
    response = answer(admission_review(ingress_object()))
    assert response == {"uid": response["uid"], "allowed": True}


def test_an_annotation_pysozu_would_fail_closed_on_is_refused_naming_it() -> None:
    obj = ingress_object(annotations={RESTRICTED: "10.0.0.0/8"})
    response = answer(admission_review(obj))
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    message = response["status"]["message"]
    assert RESTRICTED in message
    assert "not enforced" in message and "503" in message


def test_the_fail_closed_decision_is_the_controllers_own() -> None:
    """A pysozu.io key whose name says it restricts access fails closed in the controller
    (annotation_review's name rule), so it is refused here too; a mapped one is not."""
    refused = answer(admission_review(ingress_object(annotations={"pysozu.io/ip-allowlist": "x"})))
    assert refused["allowed"] is False and "pysozu.io/ip-allowlist" in refused["status"]["message"]
    hashes = "alice:" + "0" * 64
    allowed = answer(
        admission_review(ingress_object(annotations={"pysozu.io/authorized-hashes": hashes}))
    )
    assert allowed["allowed"] is True


def test_the_same_refusal_without_nginx_annotations_says_so() -> None:
    context = Context(settings=RenderSettings(nginx_annotations=False), classes=lambda: CLASSES)
    response = answer(
        admission_review(ingress_object(annotations={RESTRICTED: "1.2.3.4/32"})), context
    )
    assert "--nginx-annotations is off" in response["status"]["message"]


def test_an_unreadable_annotation_value_is_refused() -> None:
    obj = ingress_object(annotations={"pysozu.io/load-balancing": "fastest"})
    response = answer(admission_review(obj))
    assert response["allowed"] is False
    assert "pysozu.io/load-balancing" in response["status"]["message"]


def test_ignored_annotations_are_allowed_with_warnings() -> None:
    obj = ingress_object(annotations={"nginx.ingress.kubernetes.io/configuration-snippet": "x"})
    response = answer(admission_review(obj))
    assert response["allowed"] is True
    assert any("configuration-snippet" in w for w in response["warnings"])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"path_type": "Wildcard"}, "pathType 'Wildcard'"),
        ({"path": "no-slash", "path_type": "Exact"}, "must start with '/'"),
        ({"path": "/a b"}, "characters a path cannot hold"),
        ({"host": "*.com"}, "wildcard host"),
        ({"host": "bad_host.example"}, "not a DNS name"),
        (
            {
                "backend": k8s.V1IngressBackend(
                    resource=k8s.V1TypedLocalObjectReference(
                        api_group="storage.example", kind="Bucket", name="b"
                    )
                )
            },
            "a resource backend is not supported",
        ),
        (
            {
                "backend": k8s.V1IngressBackend(
                    service=k8s.V1IngressServiceBackend(
                        name="app", port=k8s.V1ServiceBackendPort(number=80, name="http")
                    )
                )
            },
            "exactly one of port number or name",
        ),
        ({"tls": [k8s.V1IngressTLS(hosts=["*.*.example"], secret_name="s")]}, "tls[0].hosts"),
    ],
)
def test_a_malformed_ingress_is_refused_saying_where(fields: dict[str, Any], named: str) -> None:
    response = answer(admission_review(ingress_object(**fields)))
    assert response["allowed"] is False
    assert named in response["status"]["message"]


def test_ingresses_of_other_classes_are_allowed_whatever_they_carry() -> None:
    obj = ingress_object(class_name="nginx", annotations={RESTRICTED: "10.0.0.0/8"}, path_type="X")
    assert answer(admission_review(obj)) == {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "allowed": True,
    }
    unclassed = ingress_object(class_name=None, annotations={RESTRICTED: "10.0.0.0/8"})
    assert answer(admission_review(unclassed))["allowed"] is True


def test_our_class_name_is_judged_before_its_ingressclass_is_known() -> None:
    context = Context(classes=dict)
    obj = ingress_object(annotations={RESTRICTED: "10.0.0.0/8"})
    assert answer(admission_review(obj), context)["allowed"] is False


def test_the_legacy_class_annotation_counts() -> None:
    annotations = {"kubernetes.io/ingress.class": "pysozu", RESTRICTED: "10.0.0.0/8"}
    obj = ingress_object(class_name="nginx", annotations=annotations)
    assert answer(admission_review(obj))["allowed"] is False


def test_namespaces_not_watched_are_not_judged() -> None:
    context = Context(classes=lambda: CLASSES, namespaces=("team-a",))
    obj = ingress_object(annotations={RESTRICTED: "10.0.0.0/8"})
    assert answer(admission_review(obj), context)["allowed"] is True
    inside = ingress_object(annotations={RESTRICTED: "10.0.0.0/8"}, namespace="team-a")
    assert answer(admission_review(inside), context)["allowed"] is False


def test_a_missing_tls_secret_is_a_warning_never_a_refusal() -> None:
    tls = [k8s.V1IngressTLS(hosts=["app.example"], secret_name="app-tls")]
    known: dict[ObjectKey, Any] = {}
    context = Context(classes=lambda: CLASSES, secrets=lambda: known)
    response = answer(admission_review(ingress_object(tls=tls)), context)
    assert response["allowed"] is True
    assert response["warnings"] == [
        "tls[0]: TLS Secret default/app-tls not found (yet): its hosts are served without a "
        "certificate until it exists"
    ]
    known[ObjectKey("default", "app-tls")] = parse_tls_secret({"metadata": {}, "data": {}})
    found = answer(admission_review(ingress_object(tls=tls)), context)  # found, but broken
    assert found["allowed"] is True and "not found" not in found["warnings"][0]
    unknown = Context(classes=lambda: CLASSES, secrets=None)  # not listed yet: no opinion
    assert "warnings" not in answer(admission_review(ingress_object(tls=tls)), unknown)


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_allowed(operation: str) -> None:
    assert answer(admission_review(None, operation))["allowed"] is True


def test_other_kinds_are_allowed() -> None:
    document = json.loads(admission_review({"metadata": {}}))
    document["request"]["kind"] = {"group": "", "version": "v1", "kind": "Service"}
    assert answer(json.dumps(document).encode())["allowed"] is True


def test_an_update_is_judged_on_the_new_object() -> None:
    response = answer(admission_review(ingress_object(annotations={RESTRICTED: "x"}), "UPDATE"))
    assert response["allowed"] is False


def test_the_refusal_message_is_bounded() -> None:
    annotations = {f"pysozu.io/unknown-{i}": "x" for i in range(500)}
    response = answer(admission_review(ingress_object(annotations=annotations)))
    message = response["status"]["message"]
    assert len(message) < 3200 and message.endswith("(500 reasons in all)")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",'
        b' "request": {"uid": "x"}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["empty", "text", "binary", "list", "v1beta1", "no-request", "bad-uid", "deep"],
)
def test_a_malformed_body_is_an_admission_error(body: bytes) -> None:
    with pytest.raises(AdmissionError):
        review(body, CONTEXT)


def test_a_create_without_an_object_is_an_admission_error() -> None:
    with pytest.raises(AdmissionError, match="no object"):
        review(admission_review(None), CONTEXT)


def test_a_hostile_object_is_judged_without_an_exception() -> None:
    hostile = {
        "metadata": {"annotations": {"pysozu.io/x": 5, 7: "y"}, "namespace": ["x"]},
        "spec": {
            "ingressClassName": "pysozu",
            "rules": [None, 5, {"host": 7, "http": {"paths": [None, {"path": ["/"]}]}}],
            "tls": "x",
            "defaultBackend": [],
        },
    }
    verdict = judge(hostile, CONTEXT)
    assert verdict.allowed is False and verdict.reasons
