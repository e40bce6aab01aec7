"""The admission webhook over real HTTPS on 127.0.0.1 (trustme certificates): AdmissionReview
POSTs answered, malformed bodies 400 with the server still up, a renewed certificate served
without a restart; then the running `pysozu-ingress` (kmock as its API server) judging with
what it watches: our IngressClass known, another class allowed."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import World, free_port, wait_for
from ingress_operator.model import IngressClass
from ingress_operator.supervision import Heartbeat
from ingress_operator.webhook import Context, review
from ingress_operator.webhook_server import PATH, CertificateFiles, serve_webhook
from objects import ingress, ingress_class

from dataplane.command.address import SocketAddress

pytestmark = pytest.mark.timeout(120)

RESTRICTED = "nginx.ingress.kubernetes.io/whitelist-source-range"
CONTEXT = Context(
    classes=lambda: {"pysozu": IngressClass("pysozu", "pysozu.io/ingress-controller", False)}
)


def admission_review(
    obj: dict[str, Any], uid: str = "0df28fbd-5f5f-4a11-9c1f-3f1c2a1b7e01"
) -> bytes:
    request = {
        "uid": uid,
        "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
        "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
        "namespace": "default",
        "operation": "CREATE",
        "object": obj,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def post(port: int, ca: trustme.CA, body: bytes, path: str = PATH) -> tuple[int, bytes, bytes]:
    """(status, body, DER of the certificate served) of one POST, verifying the chain."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert connection.sock is not None
        served = connection.sock.getpeercert(binary_form=True) or b""  # type: ignore[attr-defined]
        return response.status, response.read(), served
    finally:
        connection.close()


def write_pair(ca: trustme.CA, directory: Path) -> bytes:
    cert = ca.issue_cert("127.0.0.1", "pysozu-webhook.pysozu.svc")
    cert.private_key_pem.write_to_path(str(directory / "tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def test_the_https_endpoint_answers_admission_reviews(tmp_path: Path) -> None:
    ca = trustme.CA()
    first = write_pair(ca, tmp_path)
    port = free_port()

    async def scenario() -> None:
        certificates = CertificateFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
        runner = await serve_webhook(
            SocketAddress.parse(f"127.0.0.1:{port}"),
            certificates,
            lambda body: review(body, CONTEXT),
        )
        try:
            call = asyncio.to_thread
            status, body, served = await call(
                post, port, ca, admission_review(ingress("ok", "a.example", "app"))
            )
            assert (status, served) == (200, first)
            assert json.loads(body)["response"]["allowed"] is True
            bad = ingress("bad", "b.example", "app", annotations={RESTRICTED: "10.0.0.0/8"})
            status, body, _ = await call(post, port, ca, admission_review(bad, uid="u-2"))
            response = json.loads(body)["response"]
            assert status == 200 and response["uid"] == "u-2" and response["allowed"] is False
            assert RESTRICTED in response["status"]["message"]
            for malformed in (b"{", b"[]", b"\x00" * 1000, b'{"kind": "AdmissionReview"}'):
                status, body, _ = await call(post, port, ca, malformed)
                assert status == 400 and body, malformed
            status, _, _ = await call(post, port, ca, b"x" * (9 * 1024 * 1024))
            assert status == 413
            status, _, _ = await call(post, port, ca, b"{}", "/other")
            assert status == 404
            # Still up after all that, and a renewed Secret is served without a restart.
            renewed = write_pair(ca, tmp_path)
            assert certificates.reload_if_changed() and certificates.loads == 2
            status, _, served = await call(
                post, port, ca, admission_review(ingress("ok", "a.example", "app"))
            )
            assert (status, served) == (200, renewed) and renewed != first
            # A half-written pair keeps the previous one.
            (tmp_path / "tls.key").write_text("-----BEGIN PRIVATE KEY-----\n")
            assert not certificates.reload_if_changed()
            status, _, served = await call(
                post, port, ca, admission_review(ingress("ok", "a.example", "app"))
            )
            assert (status, served) == (200, renewed)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_the_certificate_watch_beats_and_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    write_pair(ca, tmp_path)
    certificates = CertificateFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
    monkeypatch.setattr("ingress_operator.webhook_server.CHECK_EVERY", 0.01)
    beat = Heartbeat("webhook-certificates", 60.0)

    async def scenario() -> None:
        task = asyncio.create_task(certificates.watch(beat))
        await asyncio.sleep(0.05)
        write_pair(ca, tmp_path)
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(scenario())
    assert certificates.loads == 2


def test_the_running_controller_judges_with_what_it_watches(world: World) -> None:
    ca = trustme.CA()
    write_pair(ca, world.tmp)
    port = free_port()
    world.apply(ingress_class())
    world.start_operator(
        "--webhook-address", f"127.0.0.1:{port}",
        "--webhook-cert-file", str(world.tmp / "tls.crt"),
        "--webhook-key-file", str(world.tmp / "tls.key"),
    )  # fmt: skip
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    bad = ingress("bad", "b.example", "app", annotations={RESTRICTED: "10.0.0.0/8"})
    status, body, _ = wait_for("the webhook", lambda: post(port, ca, admission_review(bad)))
    response = json.loads(body)["response"]
    assert status == 200 and response["allowed"] is False
    assert RESTRICTED in response["status"]["message"]
    other = {**bad, "spec": {**bad["spec"], "ingressClassName": "nginx"}}
    assert json.loads(post(port, ca, admission_review(other))[1])["response"]["allowed"] is True
    tls = ingress("tls", "t.example", "app", tls_secret="missing-tls")
    answer = json.loads(post(port, ca, admission_review(tls))[1])["response"]
    assert answer["allowed"] is True
    assert answer["warnings"] == [
        "tls[0]: TLS Secret default/missing-tls not found (yet): its hosts are served without a "
        "certificate until it exists"
    ]
    assert post(port, ca, b"garbage")[0] == 400
    assert world.health() == (200, "ok\n")
    assert world.processes["operator"].popen.poll() is None


def test_the_running_controller_refuses_conflicts_regexes_and_missing_secrets(
    world: World,
) -> None:
    """Claims come from the controller's indices (the Ingress applied through kmock), not
    from the API per request; TLS Secrets are required with --webhook-require-tls-secrets."""
    ca = trustme.CA()
    write_pair(ca, world.tmp)
    port = free_port()
    world.apply(ingress_class(), ingress("first", "a.example", "api", path="/api"))
    world.start_operator(
        "--nginx-annotations",
        "--webhook-require-tls-secrets",
        "--webhook-address", f"127.0.0.1:{port}",
        "--webhook-cert-file", str(world.tmp / "tls.crt"),
        "--webhook-key-file", str(world.tmp / "tls.key"),
    )  # fmt: skip
    wait_for("the operator's first push (/readyz)", world.operator_ready)

    def judged(obj: dict[str, Any]) -> dict[str, Any]:
        status, body, _ = post(port, ca, admission_review(obj))
        assert status == 200
        response: dict[str, Any] = json.loads(body)["response"]
        return response

    clash = judged(ingress("second", "a.example", "other", path="/api"))
    assert clash["allowed"] is False
    assert (
        "route a.example/api is already served by Ingress default/first"
        in (clash["status"]["message"])
    )
    assert judged(ingress("second", "a.example", "api", path="/api"))["allowed"] is True
    assert judged(ingress("second", "a.example", "other", path="/web"))["allowed"] is True
    # The index follows the watch: once the first Ingress is gone, its route is free.
    world.kubectl("delete", "ingress", "first")
    wait_for(
        "the route to be free",
        lambda: judged(ingress("second", "a.example", "other", path="/api"))["allowed"],
    )
    regex = {"nginx.ingress.kubernetes.io/use-regex": "true"}
    bad = ingress("re", "r.example", "app", "/v(1", "ImplementationSpecific", annotations=regex)
    refused = judged(bad)
    assert (
        refused["allowed"] is False
        and "use-regex path '/v(1' does not compile" in (refused["status"]["message"])
    )
    good = ingress(
        "re", "r.example", "app", "/v[0-9]+", "ImplementationSpecific", annotations=regex
    )
    assert judged(good)["allowed"] is True
    missing = judged(ingress("tls", "t.example", "app", tls_secret="missing-tls"))
    assert missing["allowed"] is False
    assert "TLS Secret default/missing-tls not found" in missing["status"]["message"]
    assert world.health() == (200, "ok\n")
