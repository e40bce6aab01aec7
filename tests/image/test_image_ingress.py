"""The chart's pod, run from the image: the proxy container and the ingress controller
container share the command socket's volume, the controller talks to an API server (the
kmock stand-in of tests/e2e), and an Ingress applied with kubectl becomes traffic.

Both containers are started from the chart's own rendering (helm template): the proxy's
config.toml from the ConfigMap, each container's args, the user, the read-only root, the
dropped capabilities, and the default certificate's Secret (defaultTLSCertificate) mounted.
What a node would provide differs, and only that: the pod network is this machine's
(`--network host`), so the listeners' 0.0.0.0 becomes 127.0.0.1 and the ports are free ones;
the service account is a kubeconfig pointing at kmock; POD_NAMESPACE, which the kubelet fills
from metadata.namespace, is set to the namespace used here.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trustme
import yaml
from podman_tools import REPO, Podman, wait_for
from test_image import SlowBackend, free_port, get

sys.path.append(str(REPO / "tests" / "chart"))
from chart_tooling import TOOLS_BIN, helm_template, install_tools, load_documents

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

KMOCK = REPO / "tests" / "e2e" / "kmock_apiserver.py"
PUBLISHED = "192.0.2.10"
DEFAULT_CERTIFICATE_SECRET = "default-tls"
DEFAULT_CERTIFICATE_HOST = "default.pysozu.test"
NAMESPACE = "default"


def _e2e_objects() -> ModuleType:
    """tests/e2e/objects.py: the Kubernetes objects the e2e tests apply."""
    spec = importlib.util.spec_from_file_location("e2e_objects", REPO / "tests/e2e/objects.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


objects = _e2e_objects()


class Cluster:
    """kmock on 127.0.0.1 and a kubeconfig for it; kubectl from .tools/bin."""

    def __init__(self, tmp: Path) -> None:
        port_file = tmp / "kmock.port"
        self.log = tmp / "kmock.log"
        self.process = subprocess.Popen(
            [sys.executable, str(KMOCK), "--port-file", str(port_file)],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        port = wait_for("kmock", lambda: port_file.exists() and port_file.read_text())
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "kmock", "context": {
                "cluster": "kmock", "user": "test", "namespace": NAMESPACE}}],
        }))  # fmt: skip
        self.kubeconfig.chmod(0o644)  # read by the container's user 10001

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        command = [str(TOOLS_BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, *documents: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(documents))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if (reason := install_tools()) is not None:
        pytest.fail(f"kubectl unavailable: {reason}")
    kmock = Cluster(tmp_path)
    try:
        yield kmock
    finally:
        kmock.stop()


def rendered_pod(ports: dict[str, int]) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """The chart's objects, its pod spec and config.toml, rendered for these ports."""
    values = [f"ports.{name}={port}" for name, port in ports.items()]
    values += [f"publishAddress={PUBLISHED}", "config.workerCount=1",
               f"defaultTLSCertificate.secretName={DEFAULT_CERTIFICATE_SECRET}"]  # fmt: skip
    documents = load_documents(helm_template(set_values=values))
    workload = next(d for d in documents if d["kind"] == "Deployment")
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    return documents, workload["spec"]["template"]["spec"], config_map["data"]["config.toml"]


def podman_options(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """What the kubelet would make of the pod's and the container's security settings."""
    user = pod["securityContext"]
    security = container["securityContext"]
    options = ["--network", "host", "--user", f"{user['runAsUser']}:{user['runAsGroup']}"]
    if security["readOnlyRootFilesystem"]:
        options += ["--read-only", "--read-only-tmpfs=false"]
    options += [f"--cap-drop={cap}" for cap in security["capabilities"]["drop"]]
    if not security["allowPrivilegeEscalation"]:
        options += ["--security-opt", "no-new-privileges"]
    return options


def local(args: list[str]) -> list[str]:
    """The pod's 0.0.0.0 listeners, on this machine's loopback instead."""
    return [arg.replace("0.0.0.0:", "127.0.0.1:") for arg in args]


def default_certificate_names(authority: trustme.CA, port: int) -> list[str]:
    """The DNS names of the certificate the listener presents for an unknown SNI name."""
    context = ssl.create_default_context()
    authority.configure_trust(context)
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="unknown.pysozu.test") as tls,
    ):
        certificate = tls.getpeercert()
    assert certificate is not None
    names: tuple[tuple[str, str], ...] = certificate.get("subjectAltName", ())  # type: ignore[assignment]
    return [value for kind, value in names if kind == "DNS"]


def test_an_ingress_becomes_traffic_through_the_charts_pod(
    podman: Podman, image: str, cluster: Cluster, tmp_path: Path
) -> None:
    backend = SlowBackend()
    try:
        ports = {name: free_port() for name in ("http", "https", "metrics", "health")}
        documents, pod, config = rendered_pod(ports)
        containers = {c["name"]: c for c in pod["containers"]}
        proxy_spec, controller_spec = containers["pysozu"], containers["pysozu-ingress"]
        # The volumes: "run" (the command socket) shared, "tmp" per container, "config" mounted.
        mounts = {m["name"]: m["mountPath"] for m in proxy_spec["volumeMounts"]}
        assert {m["name"]: m["mountPath"] for m in controller_spec["volumeMounts"]} == {
            "run": mounts["run"], "tmp": "/tmp"}  # fmt: skip
        config_dir = tmp_path / "config"
        config_dir.mkdir(mode=0o755)
        (config_dir / "config.toml").write_text(config.replace("0.0.0.0:", "127.0.0.1:"))
        (config_dir / "config.toml").chmod(0o644)
        # The default certificate's Secret, as the kubelet mounts it (tls.crt, tls.key).
        authority = trustme.CA()
        tls_dir = tmp_path / "default-tls"
        tls_dir.mkdir(mode=0o755)
        issued = authority.issue_cert(DEFAULT_CERTIFICATE_HOST)
        issued.cert_chain_pems[0].write_to_path(str(tls_dir / "tls.crt"))
        issued.private_key_pem.write_to_path(str(tls_dir / "tls.key"))
        for file in tls_dir.iterdir():
            file.chmod(0o644)  # a Secret volume's default mode
        run_volume = podman.volume("run")
        shared = ["--volume", f"{run_volume}:{mounts['run']}", "--tmpfs", "/tmp"]
        proxy = podman.run(
            image, *local(proxy_spec["args"]), what="proxy",
            options=[*podman_options(pod, proxy_spec), *shared,
                     "--volume", f"{config_dir}:{mounts['config']}:ro",
                     "--volume", f"{tls_dir}:{mounts['default-tls']}:ro"],
        )  # fmt: skip
        proxy.wait_ready()
        env = {e["name"]: e.get("value", "") for e in controller_spec["env"]}
        assert set(env) == {"POD_NAMESPACE"}
        controller = podman.run(
            image, *local(controller_spec["args"]), what="controller",
            options=[*podman_options(pod, controller_spec), *shared,
                     "--volume", f"{cluster.kubeconfig}:/etc/kubeconfig:ro",
                     "--env", "KUBECONFIG=/etc/kubeconfig", "--env", f"POD_NAMESPACE={NAMESPACE}"],
        )  # fmt: skip
        cluster.apply(next(d for d in documents if d["kind"] == "IngressClass"))

        def ready() -> bool:
            return get(ports["health"], "health", "/readyz", timeout=3)[0] == 200

        try:
            wait_for("the controller's /readyz", ready, timeout=90)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{controller.logs()}") from None
        cluster.apply(
            objects.service("app"),
            objects.endpoint_slice("app", ["127.0.0.1"], backend.port),
            objects.ingress("app", "app.test", "app"),
        )
        routed = lambda: get(ports["http"], "app.test") == (200, "backend /")  # noqa: E731
        wait_for("traffic through the Ingress", routed, timeout=60)
        assert get(ports["http"], "app.test", "/deep?q=1") == (200, "backend /deep?q=1")
        assert get(ports["http"], "other.test")[0] == 404

        def published() -> bool:
            body = json.loads(cluster.kubectl("get", "ingress", "app", "-o", "json"))
            addresses = body.get("status", {}).get("loadBalancer", {}).get("ingress")
            return bool(addresses == [{"ip": PUBLISHED}])

        wait_for("the Ingress status (the elected controller writes it)", published)
        # A name no Ingress has: the HTTPS listener answers with the default certificate,
        # still there after the controller took the listener over.
        assert default_certificate_names(authority, ports["https"]) == [DEFAULT_CERTIFICATE_HOST]
        cluster.kubectl("delete", "ingress", "app")
        wait_for("the route to go", lambda: get(ports["http"], "app.test")[0] == 404)
        # Both containers stop cleanly, as the kubelet stops them.
        for container in (controller, proxy):
            container.stop(35)
            state = container.state()["State"]
            assert state["ExitCode"] == 0, container.logs()
    finally:
        backend.stop()
