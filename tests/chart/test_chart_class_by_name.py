"""ingressClass.byName (`--ingress-class-name`): with rbac.scope=namespace the chart renders
no ClusterRole and no ClusterRoleBinding at all, and the controller is told the class name,
so it never reads an IngressClass."""

from __future__ import annotations

import pytest
from chart_tooling import by_kind, container, helm_template, load_documents, pod_spec
from ingress_operator.cli import parser, settings_from

pytestmark = pytest.mark.timeout(120)

SCOPED = ["rbac.scope=namespace", "watchNamespaces={team-a,team-b}"]
CLUSTER_KINDS = ("ClusterRole", "ClusterRoleBinding")


def controller_settings(objects: list[dict[str, object]]) -> object:
    args = container(pod_spec(objects), "pysozu-ingress")["args"]
    assert args[0] == "pysozu-ingress"
    return settings_from(parser().parse_args(args[1:]))


def test_by_name_in_namespace_scope_renders_no_cluster_scoped_rbac(k8s_tools: None) -> None:
    objects = load_documents(helm_template(set_values=[*SCOPED, "ingressClass.byName=true"]))
    assert [o for o in objects if o["kind"] in CLUSTER_KINDS] == []
    settings = controller_settings(objects)
    assert settings.ingress_class_name == "pysozu"  # type: ignore[attr-defined]
    assert settings.namespaces == ("team-a", "team-b")  # type: ignore[attr-defined]
    watch_roles = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-watch")]
    assert {r["metadata"]["namespace"] for r in watch_roles} == {"team-a", "team-b"}
    for role in watch_roles:  # nothing cluster-scoped can be granted by a Role anyway
        assert all("ingressclasses" not in rule["resources"] for rule in role["rules"])


def test_without_by_name_the_scoped_install_keeps_its_one_cluster_read(k8s_tools: None) -> None:
    objects = load_documents(helm_template(set_values=SCOPED))
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses"],
         "verbs": ["list", "watch"]}
    ]  # fmt: skip
    assert len(by_kind(objects, "ClusterRoleBinding")) == 1
    assert controller_settings(objects).ingress_class_name is None  # type: ignore[attr-defined]


def test_by_name_in_cluster_scope_still_reads_cluster_wide(k8s_tools: None) -> None:
    objects = load_documents(helm_template(set_values=["ingressClass.byName=true"]))
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert any("ingresses" in rule["resources"] for rule in cluster_role["rules"])
    assert controller_settings(objects).ingress_class_name == "pysozu"  # type: ignore[attr-defined]
