"""rbac.scope=namespace: namespaced rights only (a Role per watched namespace), IngressClasses
read cluster-wide, the publish Service read by name; and the render-time refusals."""

from __future__ import annotations

from typing import Any

import pytest
from chart_tooling import NAMESPACE, ToolError, by_kind, helm_template, load_documents
from ingress_operator.cli import parser, settings_from

pytestmark = pytest.mark.timeout(120)

SCOPED = ["rbac.scope=namespace", "watchNamespaces={team-a,team-b}"]


def roles(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objects, "Role")
    }


def fullname_of(objects: list[dict[str, Any]]) -> str:
    (cluster_role,) = by_kind(objects, "ClusterRole")
    return str(cluster_role["metadata"]["name"])


def test_namespace_scope_needs_watch_namespaces(k8s_tools: None) -> None:
    with pytest.raises(ToolError, match=r"rbac\.scope=namespace needs watchNamespaces"):
        helm_template(set_values=["rbac.scope=namespace"])
    with pytest.raises(ToolError, match=r"rbac\.scope|scope"):
        helm_template(set_values=["rbac.scope=everywhere"])  # values.schema.json


def test_the_publish_service_outside_the_watched_namespaces_is_read_by_name(
    k8s_tools: None,
) -> None:
    objects = load_documents(helm_template(set_values=SCOPED))
    fullname = fullname_of(objects)
    publish = roles(objects)[(NAMESPACE, f"{fullname}-publish")]
    assert publish["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "resourceNames": [fullname],
         "verbs": ["list", "watch"]}
    ]  # fmt: skip
    (binding,) = [b for b in by_kind(objects, "RoleBinding")
                  if b["metadata"]["name"] == f"{fullname}-publish"]  # fmt: skip
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == f"{fullname}-publish"
    assert {ns for ns, name in roles(objects) if name == f"{fullname}-watch"} == {
        "team-a",
        "team-b",
    }


@pytest.mark.parametrize(
    "extra",
    [["publishService.pathOverride=team-b/edge"], ["publishAddress=203.0.113.7"],
     ["publishService.enabled=false"]],
    ids=["publish-service-in-a-watched-namespace", "publish-address", "no-publishing"],
)  # fmt: skip
def test_no_publish_role_when_nothing_more_is_read(k8s_tools: None, extra: list[str]) -> None:
    objects = load_documents(helm_template(set_values=[*SCOPED, *extra]))
    assert not [name for _, name in roles(objects) if name.endswith("-publish")]


def test_cluster_scope_has_no_namespaced_watch_roles(k8s_tools: None) -> None:
    objects = load_documents(helm_template(set_values=["watchNamespaces={team-a}"]))
    assert [name for _, name in roles(objects)] == [fullname_of(objects)]  # the Lease's


def test_watch_namespace_is_an_alias_of_namespace() -> None:
    args = ["--command-socket", "s", "--watch-namespace", "a", "--namespace", "b"]
    assert settings_from(parser().parse_args(args)).namespaces == ("a", "b")
