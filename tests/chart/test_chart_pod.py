"""The pod the chart renders, in every scenario: security, the shared command socket, probes,
the drain, ports, RBAC and the IngressClass agree with each other and with the controller."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
from chart_facts import (
    container_ports,
    controller_flags,
    port_of,
    proxy_config,
    scenario_values,
)
from chart_tooling import (
    IMAGE_REPOSITORY,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    by_kind,
    container,
    helm_template,
    load_documents,
    one,
    pod_spec,
    project_version,
)
from ingress_operator.cli import parser

# Everything pysozu-ingress does, as (API group, resource, verb): list and watch what its kopf
# indices cover (it never GETs them), patch Ingress status, post Events (operator/kube.py).
WATCHED = [
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"),
    ("", "services"),
    ("", "secrets"),
    ("discovery.k8s.io", "endpointslices"),
]
EXPECTED_CLUSTER_PERMISSIONS = {
    *((group, resource, verb) for group, resource in WATCHED for verb in ("list", "watch")),
    ("networking.k8s.io", "ingresses/status", "patch"),
    ("", "events", "create"),
}
# rbac.scope=namespace: the cluster-scoped resource stays in the ClusterRole, the rest goes
# into a Role in each watched namespace.
CLUSTER_SCOPED_PERMISSIONS = {p for p in EXPECTED_CLUSTER_PERMISSIONS if p[1] == "ingressclasses"}
NAMESPACED_PERMISSIONS = EXPECTED_CLUSTER_PERMISSIONS - CLUSTER_SCOPED_PERMISSIONS


def expected_namespace_rules(lease: str) -> list[dict[str, Any]]:
    """Leader election for status writes, in the release namespace only, on the release's
    own Lease (the one --election-id names)."""
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "patch"],
        },
    ]


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}

pytestmark = pytest.mark.timeout(300)


def ours(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The proxy and the controller (not the extraContainers)."""
    return [c for c in spec["containers"] if c["name"] in ("pysozu", "pysozu-ingress")]


def permissions(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pod_runs_non_root_read_only_without_capabilities(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    spec = pod_spec(rendered_scenarios[scenario])
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 10001  # the image's USER (see test_dockerfile.py)
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    names = [c["name"] for c in spec["containers"]]
    extra = [c["name"] for c in scenario_values(scenario)["extraContainers"]]
    assert names == ["pysozu", "pysozu-ingress", *extra]
    for c in ours(spec):
        security = c["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, c["name"]
        assert security["allowPrivilegeEscalation"] is False, c["name"]
        assert security["capabilities"] == {"drop": ["ALL"]}, c["name"]
        # The socket is mode 0600: both containers must keep the pod's uid.
        assert "runAsUser" not in security, c["name"]
        # `args`, not `command`: the image's ENTRYPOINT (tini -g) must stay PID 1.
        assert "command" not in c, c["name"]
        assert c["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_command_socket_volume_is_shared_by_both_containers(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objects = rendered_scenarios[scenario]
    spec = pod_spec(objects)
    socket = proxy_config(objects)["command_socket"]
    assert controller_flags(spec)["--command-socket"] == [socket]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {c["name"]: {m["mountPath"]: m["name"] for m in c["volumeMounts"]} for c in ours(spec)}
    socket_dir = socket.rsplit("/", 1)[0]
    assert mounts["pysozu"][socket_dir] == mounts["pysozu-ingress"][socket_dir] == "run"
    assert "emptyDir" in volumes["run"]
    # The proxy reads its config from the ConfigMap, at the path its command line names.
    assert mounts["pysozu"]["/etc/pysozu"] == "config"
    assert volumes["config"]["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]
    extra_args = scenario_values(scenario)["proxy"]["extraArgs"]
    start = ["pysozu", "start", "-c", "/etc/pysozu/config.toml", *extra_args]
    assert container(spec, "pysozu")["args"] == start
    # Read-only root: each container's writable places are volumes.
    for c in ours(spec):
        assert mounts[c["name"]]["/tmp"] == "tmp"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_check_each_process(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    spec = pod_spec(rendered_scenarios[scenario])
    proxy = container(spec, "pysozu")
    paths = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in paths.items():
        assert proxy[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
        assert (
            proxy[probe]["timeoutSeconds"] < proxy[probe]["periodSeconds"]
            or probe == "startupProbe"
        )
    ingress = container(spec, "pysozu-ingress")
    health_port = port_of(controller_flags(spec)["--health-address"][0])
    assert container_ports(spec, "pysozu-ingress")["health"]["containerPort"] == health_port
    assert ingress["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert ingress["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    for c in ours(spec):
        assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_grace_period_outlasts_the_drain(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    values = scenario_values(scenario)
    spec = pod_spec(rendered_scenarios[scenario])
    hook = container(spec, "pysozu")["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["/bin/sh", "-c"]
    match = re.fullmatch(r"sleep (\d+); exec (pysozu .*)", hook[2])
    assert match, hook[2]
    deregistration = int(match[1])
    command = shlex.split(match[2])
    assert command[:3] + command[5:] == ["pysozu", "-c", "/etc/pysozu/config.toml", "shutdown"]
    assert command[3] == "-t"  # the CLI's wait for the soft stop's answer, in milliseconds
    drain = int(command[4]) / 1000
    assert deregistration == values["drain"]["lbDeregistrationSeconds"]
    assert drain == values["drain"]["timeoutSeconds"]
    assert spec["terminationGracePeriodSeconds"] > deregistration + drain


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ports_agree_between_config_containers_and_services(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objects = rendered_scenarios[scenario]
    spec = pod_spec(objects)
    config = proxy_config(objects)
    flags = controller_flags(spec)
    ports = container_ports(spec, "pysozu")
    listeners = [(li["protocol"], port_of(li["address"])) for li in config["listeners"]]
    extra = scenario_values(scenario)["extraListeners"]
    assert listeners == [
        ("http", ports["http"]["containerPort"]),
        ("https", ports["https"]["containerPort"]),
        *((e["protocol"].lower(), ports[e["name"]]["containerPort"]) for e in extra),
    ]
    assert all(ports[e["name"]]["protocol"] == e["protocol"] for e in extra)
    listeners_by_protocol = dict(listeners[:2])
    assert port_of(flags["--http-address"][0]) == listeners_by_protocol["http"]
    assert port_of(flags["--https-address"][0]) == listeners_by_protocol["https"]
    metrics_port = port_of(config["prometheus"]["address"])
    assert ports["metrics"]["containerPort"] == metrics_port
    workload = next(o for o in objects if o["kind"] in ("Deployment", "DaemonSet"))
    template = workload["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    if annotations.get("prometheus.io/scrape") == "true":
        assert annotations["prometheus.io/port"] == str(metrics_port)
        assert annotations["prometheus.io/path"] == "/metrics"
    pod_labels = template["metadata"]["labels"]
    pod_ports = {**ports, **container_ports(spec, "pysozu-ingress")}  # + health (and /metrics)
    for service in by_kind(objects, "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in pod_ports, port
    for monitor in by_kind(objects, "ServiceMonitor"):
        selected = [
            s for s in by_kind(objects, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]  # fmt: skip
        assert [s["metadata"]["name"] for s in selected] == [f"{RELEASE}-metrics"]
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_grants_exactly_what_the_controller_needs(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objects = rendered_scenarios[scenario]
    values = scenario_values(scenario)
    cluster_role = one(objects, "ClusterRole")
    fullname = cluster_role["metadata"]["name"]
    account = one(objects, "ServiceAccount")["metadata"]
    bindings: list[tuple[str, dict[str, Any]]] = [("ClusterRoleBinding", cluster_role)]
    if values["rbac"]["scope"] == "namespace":
        # IngressClasses are the one cluster-wide read; the rest, per watched namespace.
        assert permissions(cluster_role["rules"]) == CLUSTER_SCOPED_PERMISSIONS
        watch_roles = {
            r["metadata"]["namespace"]: r
            for r in by_kind(objects, "Role")
            if r["metadata"]["name"] == f"{fullname}-watch"
        }
        assert set(watch_roles) == set(values["watchNamespaces"])
        for watch in watch_roles.values():
            assert permissions(watch["rules"]) == NAMESPACED_PERMISSIONS
    else:
        assert permissions(cluster_role["rules"]) == EXPECTED_CLUSTER_PERMISSIONS
        assert [r["metadata"]["name"] for r in by_kind(objects, "Role")] == [fullname]
    role = one([r for r in by_kind(objects, "Role") if r["metadata"]["namespace"] == NAMESPACE
                and r["metadata"]["name"] == fullname], "Role")  # fmt: skip
    (lease,) = controller_flags(pod_spec(objects))["--election-id"]
    assert role["rules"] == expected_namespace_rules(lease)
    writes = {p for p in EXPECTED_CLUSTER_PERMISSIONS if p[2] in WRITE_VERBS}
    assert {resource for _, resource, _ in writes} == {"ingresses/status", "events"}
    # pysozu-ingress finds the Lease's namespace (the Role's) in POD_NAMESPACE.
    env = {e["name"]: e for e in container(pod_spec(objects), "pysozu-ingress")["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert role["metadata"]["namespace"] == account["namespace"] == NAMESPACE
    assert pod_spec(objects)["serviceAccountName"] == account["name"]
    for binding in by_kind(objects, "RoleBinding"):
        namespace = binding["metadata"]["namespace"]
        bindings.append(("RoleBinding", one(
            [r for r in by_kind(objects, "Role") if r["metadata"]["namespace"] == namespace],
            "Role", binding["roleRef"]["name"],
        )))  # fmt: skip
    assert len(bindings) == 1 + len(by_kind(objects, "Role"))  # every Role is bound
    for kind, role_obj in bindings:
        bound = next(
            b for b in by_kind(objects, kind)
            if b["roleRef"]["name"] == role_obj["metadata"]["name"]
            and b["metadata"].get("namespace") == role_obj["metadata"].get("namespace")
        )  # fmt: skip
        assert bound["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ingress_class_names_this_controller(
    rendered_scenarios: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objects = rendered_scenarios[scenario]
    values = scenario_values(scenario)
    ingress_class = one(objects, "IngressClass")
    flags = controller_flags(pod_spec(objects))
    assert flags["--ingress-class"] == [ingress_class["metadata"]["name"]]
    assert flags["--controller-name"] == [ingress_class["spec"]["controller"]]
    is_default = (
        ingress_class["metadata"]
        .get("annotations", {})
        .get("ingressclass.kubernetes.io/is-default-class")
    )
    assert is_default == ("true" if values["ingressClass"]["default"] else None)


def test_each_release_elects_with_its_own_lease(k8s_tools: None) -> None:
    """Two releases in one namespace: two Leases, each Role allowing its own; a chosen
    electionID is passed as it is, and pysozu-ingress accepts what the chart passes."""
    leases = {}
    for release in ("edge", "internal"):
        objects = load_documents(helm_template(release=release))
        (lease,) = controller_flags(pod_spec(objects))["--election-id"]
        assert one(objects, "Role")["rules"] == expected_namespace_rules(lease)
        args = ["--command-socket", "s", f"--election-id={lease}"]
        assert parser().parse_args(args).election_id == lease
        leases[release] = lease
    assert leases == {"edge": "edge-pysozu-leader", "internal": "internal-pysozu-leader"}
    chosen = load_documents(helm_template(set_values=["controller.electionID=shared-leader"]))
    assert controller_flags(pod_spec(chosen))["--election-id"] == ["shared-leader"]
