"""--publish-service: which addresses a Service publishes, and the watch that follows it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ingress_operator.kube import KubeError
from ingress_operator.model import published_addresses
from ingress_operator.publish import PublishedService
from ingress_operator.settings import Settings
from ingress_operator.status import publish_addresses
from ingress_operator.supervision import Heartbeat
from test_operator_conformance import BASE, load

LB = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example"}]}}


@pytest.mark.parametrize(
    ("kind", "spec", "status", "expected"),
    [
        ("LoadBalancer", {"clusterIP": "10.0.0.1"}, LB,
         (("ip", "203.0.113.7"), ("hostname", "lb.example"))),
        ("LoadBalancer", {"clusterIP": "10.0.0.1"}, {}, ()),  # pending: not the cluster IP
        ("LoadBalancer", {"clusterIP": "10.0.0.1", "externalIPs": ["198.51.100.1"]}, {},
         (("ip", "198.51.100.1"),)),
        ("LoadBalancer", {"externalIPs": ["203.0.113.7", "198.51.100.1"]}, LB,
         (("ip", "203.0.113.7"), ("hostname", "lb.example"), ("ip", "198.51.100.1"))),
        ("NodePort", {"clusterIP": "10.0.0.1", "externalIPs": ["198.51.100.1"]}, {},
         (("ip", "198.51.100.1"),)),
        ("ClusterIP", {"clusterIP": "10.0.0.1"}, {}, (("ip", "10.0.0.1"),)),
        ("ClusterIP", {"clusterIP": "None"}, {}, ()),  # headless
        ("ExternalName", {"externalName": "edge.example"}, {}, (("hostname", "edge.example"),)),
        ("LoadBalancer", {"externalIPs": "not a list"}, {"loadBalancer": [1]}, ()),  # hostile
    ],
)  # fmt: skip
def test_published_addresses(
    kind: str, spec: dict[str, Any], status: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    assert published_addresses(kind, spec, status) == expected


def lb_service(status: dict[str, Any], name: str = "lb") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "edge", "name": name},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"},
        "status": status,
    }


class ScriptedApi:
    """list_service / watch_service following a script; the last step cancels the loop."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.calls: list[tuple[str, str | None]] = []

    async def list_service(self, namespace: str, name: str) -> tuple[Any, str]:
        self.calls.append(("list", None))
        result: tuple[Any, str] = self.steps.pop(0)
        return result

    async def watch_service(
        self, namespace: str, name: str, since: str, deliver: Callable[[str, Any], None]
    ) -> str:
        self.calls.append(("watch", since))
        step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        events, version = step
        for kind, body in events:
            deliver(kind, body)
        return str(version)


def test_the_watch_follows_the_service_and_lists_again_after_410() -> None:
    api = ScriptedApi(
        [
            (lb_service({}), "1"),  # pending
            ([("MODIFIED", lb_service(LB))], "5"),  # the LB gets its address
            ([("MODIFIED", lb_service(LB))], "6"),  # an unrelated change: no wake-up
            KubeError("watch ended: 410 too old", 410),
            (lb_service({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}), "9"),
            ([("DELETED", lb_service({}))], "10"),
            asyncio.CancelledError(),
        ]
    )
    seen: list[Any] = []
    published = PublishedService(api, "edge", "lb", lambda: seen.append(published.addresses))  # type: ignore[arg-type]
    assert published.addresses is None
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(published.run(Heartbeat("publish-service", 120)))
    assert seen == [
        (),
        (("ip", "203.0.113.7"), ("hostname", "lb.example")),
        (("ip", "203.0.113.9"),),
        (),
    ]
    assert api.calls == [
        ("list", None), ("watch", "1"), ("watch", "5"), ("watch", "6"),
        ("list", None), ("watch", "9"), ("watch", "10"),
    ]  # fmt: skip


def test_the_followed_addresses_win_over_the_indexed_service() -> None:
    snapshot = load(*BASE)
    settings = Settings(command_socket=Path("s"), publish_service=("default", "echo-service"))
    indexed = publish_addresses(settings, snapshot)
    assert indexed  # the Service as indexed, until the watch answered
    assert publish_addresses(settings, snapshot, (("ip", "203.0.113.7"),)) == (
        ("ip", "203.0.113.7"),
    )
    assert publish_addresses(settings, snapshot, ()) == ()  # pending: nothing
