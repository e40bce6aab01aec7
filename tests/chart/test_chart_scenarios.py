"""What each values scenario renders: the defaults, the ci/*-values.yaml files, and single
values reaching the objects they configure."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from chart_facts import container_ports, controller_flags, proxy_config
from chart_tooling import (
    IMAGE_REPOSITORY,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    by_kind,
    one,
    pod_spec,
    render,
)

pytestmark = pytest.mark.timeout(300)


def test_default_values_make_a_load_balanced_deployment(
    default_objects: list[dict[str, Any]],
) -> None:
    kinds = sorted(obj["kind"] for obj in default_objects)
    assert kinds == sorted([
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
        "IngressClass", "ConfigMap", "Deployment", "Service", "Service", "PodDisruptionBudget",
    ])  # fmt: skip
    deployment = one(default_objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["namespace"] == NAMESPACE
    service = one(default_objects, "Service", RELEASE)
    assert service["spec"]["type"] == "LoadBalancer"
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
        ("http", 80),
        ("https", 443),
    ]
    assert one(default_objects, "PodDisruptionBudget")["spec"] == {
        "selector": deployment["spec"]["selector"],
        "maxUnavailable": 1,
    }
    flags = controller_flags(pod_spec(default_objects))
    assert flags["--publish-service"] == [f"{NAMESPACE}/{RELEASE}"]
    assert "--watch-ingress-without-class" not in flags and "--namespace" not in flags
    config = proxy_config(default_objects)
    assert config["worker_count"] == 2 and config["buffer_size"] == 16393


def test_daemonset_scenario_uses_the_node_network(
    rendered_scenarios: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered_scenarios["daemonset-hostnetwork"]
    assert not by_kind(objects, "Deployment") and not by_kind(objects, "PodDisruptionBudget")
    assert not by_kind(objects, "HorizontalPodAutoscaler")
    assert [s["metadata"]["name"] for s in by_kind(objects, "Service")] == [f"{RELEASE}-metrics"]
    spec = pod_spec(objects)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert one(objects, "DaemonSet")["spec"]["updateStrategy"]["rollingUpdate"] == {
        "maxUnavailable": 1
    }
    flags = controller_flags(spec)
    assert flags["--publish-address"] == ["192.0.2.10"] and "--publish-service" not in flags


def test_metrics_scenario_adds_service_monitor_and_autoscaler(
    rendered_scenarios: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered_scenarios["metrics-servicemonitor"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": port, "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
        for port in ("metrics", "controller-metrics")  # the proxy's, the controller's
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": RELEASE,
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    assert "replicas" not in one(objects, "Deployment")["spec"]
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations


def test_custom_class_scenario_renders_its_settings(
    rendered_scenarios: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered_scenarios["custom-class"]
    spec = pod_spec(objects)
    flags = controller_flags(spec)
    assert flags["--namespace"] == ["team-a", "team-b"]
    assert flags["--watch-ingress-without-class"] == [""] and flags["--nginx-annotations"] == [""]
    ports = container_ports(spec, "pysozu")
    assert (ports["http"]["hostPort"], ports["https"]["hostPort"]) == (80, 443)
    service = one(objects, "Service", RELEASE)
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["metadata"]["annotations"] == {"example.com/owner": "edge-team"}
    config = proxy_config(objects)
    expected = {
        "worker_count": 4,
        "log_level": "debug",
        "max_connections": 20000,
        "buffer_size": 32768,
        "min_buffers": 16,
        "max_buffers": 4000,
        "front_timeout": 120,
        "back_timeout": 60,
        "connect_timeout": 5,
        "request_timeout": 15,
        "max_connections_per_ip": 100,  # from config.extraToml
    }
    assert {key: config[key] for key in expected} == expected
    assert one(objects, "Deployment")["spec"]["replicas"] == 3


def test_config_change_rolls_the_pods(k8s_tools: None) -> None:
    def checksum(objects: list[dict[str, Any]]) -> str:
        template = one(objects, "Deployment")["spec"]["template"]
        value: str = template["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum(render()) != checksum(render(set_values=["config.workerCount=3"]))


def test_extra_controller_args_and_values_reach_the_pod(k8s_tools: None) -> None:
    objects = render(set_values=[
        "controller.extraArgs[0]=--namespace=extra", "publishAddress=lb.example.com",
        "kind=DaemonSet", "hostPort.enabled=true", "service.type=ClusterIP",
    ])  # fmt: skip
    flags = controller_flags(pod_spec(objects))
    assert flags["--namespace"] == ["extra"]
    assert flags["--publish-address"] == ["lb.example.com"]
    assert not by_kind(objects, "PodDisruptionBudget")


def test_scheduling_image_and_metadata_values_reach_the_pod(k8s_tools: None) -> None:
    digest = "sha256:" + "ab" * 32
    terms = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    objects = render(
        set_values=[
            "nodeSelector.pool=edge",
            "tolerations[0].key=edge",
            "tolerations[0].operator=Exists",
            f"{terms}[0].matchExpressions[0].key=pool",
            f"{terms}[0].matchExpressions[0].operator=In",
            f"{terms}[0].matchExpressions[0].values[0]=edge",
            "topologySpreadConstraints[0].maxSkew=1",
            "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "priorityClassName=system-cluster-critical",
            "imagePullSecrets[0].name=registry",
            f"image.digest={digest}",
            "image.tag=0.1.0-rc1",
            "podAnnotations.team=edge",
            "commonLabels.owner=edge",
        ]
    )
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "edge"}
    assert spec["tolerations"] == [{"key": "edge", "operator": "Exists"}]
    required = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expression = {"key": "pool", "operator": "In", "values": ["edge"]}
    assert required["nodeSelectorTerms"] == [{"matchExpressions": [expression]}]
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert {c["image"] for c in spec["containers"]} == {f"{IMAGE_REPOSITORY}:0.1.0-rc1@{digest}"}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["team"] == "edge"
    assert all(obj["metadata"]["labels"]["owner"] == "edge" for obj in objects)
    kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)
