"""The admission webhook in the chart: off by default; when on, a ValidatingWebhookConfiguration
(v1 reviews, no side effects, failurePolicy as asked) calling a Service that reaches the
controller's webhook port, with a certificate made by Helm, by cert-manager or given by the
user; every object valid Kubernetes. The certificate Helm makes is served by the controller's
own HTTPS endpoint and verified the way the API server verifies it (caBundle, service DNS)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from chart_tooling import (
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    ToolError,
    by_kind,
    container,
    helm_template,
    one,
    pod_spec,
    render,
)
from ingress_operator.webhook import Context, review
from ingress_operator.webhook_server import PATH, CertificateFiles, serve_webhook

from dataplane.command.address import SocketAddress

pytestmark = pytest.mark.timeout(300)

ON = ["webhook.enabled=true"]
SERVICE = f"{RELEASE}-webhook"
SECRET = f"{RELEASE}-webhook-tls"


def flags(objects: list[dict[str, Any]]) -> dict[str, str]:
    args = container(pod_spec(objects), "pysozu-ingress")["args"]
    pairs = (a.split("=", 1) if "=" in a else (a, "") for a in args)
    return {name: value for name, value in pairs if name.startswith("--webhook")}


def webhook_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    configuration = one(objects, "ValidatingWebhookConfiguration")
    (hook,) = configuration["webhooks"]
    hook_: dict[str, Any] = hook
    return hook_


def validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] in ("Issuer", "Certificate"):
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_off_by_default(k8s_tools: None) -> None:
    objects = render()
    assert not by_kind(objects, "ValidatingWebhookConfiguration")
    assert not flags(objects)
    assert "webhook" not in {
        p["name"] for p in container(pod_spec(objects), "pysozu-ingress")["ports"]
    }


def test_the_configuration_calls_the_controller_through_its_service(k8s_tools: None) -> None:
    objects = render(set_values=ON)
    validate(objects)
    hook = webhook_of(objects)
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "None"
    assert hook["failurePolicy"] == "Ignore"  # the default: see values.yaml
    assert hook["timeoutSeconds"] == 10
    assert hook["rules"] == [
        {
            "apiGroups": ["networking.k8s.io"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["ingresses"],
            "scope": "Namespaced",
        }
    ]
    assert "namespaceSelector" not in hook and "objectSelector" not in hook
    assert hook["clientConfig"]["service"] == {
        "name": SERVICE, "namespace": NAMESPACE, "path": PATH, "port": 443,
    }  # fmt: skip
    service = one(objects, "Service", SERVICE)
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443 and port["targetPort"] == "webhook"
    controller = container(pod_spec(objects), "pysozu-ingress")
    ports = {p["name"]: p["containerPort"] for p in controller["ports"]}
    assert flags(objects)["--webhook-address"] == f"0.0.0.0:{ports['webhook']}"
    assert ports["webhook"] not in {
        p["containerPort"] for p in container(pod_spec(objects), "pysozu")["ports"]
    }
    mounts = {m["name"]: m for m in controller["volumeMounts"]}
    directory = mounts["webhook-tls"]["mountPath"]
    assert mounts["webhook-tls"]["readOnly"] is True
    assert flags(objects)["--webhook-cert-file"] == f"{directory}/tls.crt"
    assert flags(objects)["--webhook-key-file"] == f"{directory}/tls.key"
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == SECRET
    assert one(objects, "Secret", SECRET)["type"] == "kubernetes.io/tls"


def test_the_certificate_helm_makes_is_served_and_verified_like_the_api_server_does(
    k8s_tools: None, tmp_path: Path
) -> None:
    objects = render(set_values=ON)
    data = one(objects, "Secret", SECRET)["data"]
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_bytes(base64.b64decode(data[name]))
    ca_bundle = base64.b64decode(webhook_of(objects)["clientConfig"]["caBundle"]).decode()
    assert ca_bundle == base64.b64decode(data["ca.crt"]).decode()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    body = json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "kind": "Pod"}, "operation": "CREATE"},
        }
    ).encode()

    async def scenario() -> dict[str, Any]:
        certificates = CertificateFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
        runner = await serve_webhook(
            SocketAddress.parse(f"127.0.0.1:{port}"), certificates, lambda b: review(b, Context())
        )
        try:
            client = ssl.create_default_context(cadata=ca_bundle)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=f"{SERVICE}.{NAMESPACE}.svc"
            )
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: {SERVICE}.{NAMESPACE}.svc\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            answer = await reader.read()
            writer.close()
            status, _, payload = answer.partition(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 200")
            result: dict[str, Any] = json.loads(payload)
            return result
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario())["response"] == {"uid": "u", "allowed": True}


def test_cert_manager_issues_the_certificate_and_injects_the_ca(k8s_tools: None) -> None:
    objects = render(set_values=[*ON, "webhook.certManager.enabled=true"])
    validate(objects)
    assert not by_kind(objects, "Secret")  # cert-manager writes it
    certificate = one(objects, "Certificate")
    issuer = one(objects, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {
        "name": issuer["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io",
    }  # fmt: skip
    assert certificate["spec"]["secretName"] == SECRET
    assert f"{SERVICE}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    configuration = one(objects, "ValidatingWebhookConfiguration")
    injected = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert injected == f"{NAMESPACE}/{certificate['metadata']['name']}"
    assert "caBundle" not in webhook_of(objects)["clientConfig"]
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == SECRET


def test_cert_manager_with_an_issuer_of_the_users(k8s_tools: None) -> None:
    objects = render(
        set_values=[
            *ON,
            "webhook.certManager.enabled=true",
            "webhook.certManager.issuerRef.name=corp-ca",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
        ]
    )
    assert not by_kind(objects, "Issuer")
    assert one(objects, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
    }


def test_a_secret_of_the_users_with_its_ca(k8s_tools: None) -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...").decode()
    objects = render(
        set_values=[*ON, "webhook.secretName=my-webhook-tls", f"webhook.caBundle={ca}"]
    )
    validate(objects)
    assert not by_kind(objects, "Secret") and not by_kind(objects, "Certificate")
    assert webhook_of(objects)["clientConfig"]["caBundle"] == ca
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "my-webhook-tls"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["webhook.secretName=mine"], "needs webhook.caBundle"),
        (["webhook.secretName=mine", "webhook.caBundle=QQ==", "webhook.certManager.enabled=true"],
         "exclusive"),
        (["webhook.failurePolicy=Sometimes"], "failurePolicy"),
        (["webhook.timeoutSeconds=60"], "timeoutSeconds"),
    ],
)  # fmt: skip
def test_contradictions_are_refused_at_render(
    k8s_tools: None, values: list[str], complaint: str
) -> None:
    with pytest.raises(ToolError, match=complaint):
        helm_template(set_values=[*ON, *values])


def test_failure_policy_and_selectors(k8s_tools: None) -> None:
    objects = render(
        set_values=[
            *ON,
            "webhook.failurePolicy=Fail",
            "webhook.objectSelector.matchLabels.validate=yes",
            "watchNamespaces={team-a,team-b}",
        ]
    )
    validate(objects)
    hook = webhook_of(objects)
    assert hook["failurePolicy"] == "Fail"
    assert hook["objectSelector"] == {"matchLabels": {"validate": "yes"}}
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        ]
    }
    explicit = render(set_values=[*ON, "webhook.namespaceSelector.matchLabels.team=a"])
    assert webhook_of(explicit)["namespaceSelector"] == {"matchLabels": {"team": "a"}}


def test_two_releases_register_two_configurations(k8s_tools: None) -> None:
    """The configuration is cluster-scoped: its name carries the release's namespace."""
    name = one(render(set_values=ON), "ValidatingWebhookConfiguration")["metadata"]["name"]
    assert name == f"{RELEASE}-{NAMESPACE}"


def test_missing_tls_secrets_are_refused_only_when_asked(k8s_tools: None) -> None:
    assert "--webhook-require-tls-secrets" not in flags(render(set_values=ON))
    objects = render(set_values=[*ON, "webhook.requireTlsSecrets=true"])
    assert flags(objects)["--webhook-require-tls-secrets"] == ""
    off = render(set_values=["webhook.requireTlsSecrets=true"])  # the webhook is off
    assert not flags(off)
